"""The dimension alphabet, defined once. The letters are the ones the reference implementations
use in their shape comments, so a matmul line can be matched with its formula term by eye.
"""

import sympy

B = sympy.Symbol("B", integer=True, positive=True)  # batch size
n = sympy.Symbol("n", integer=True, positive=True)  # sequence length (tokens)
d = sympy.Symbol("d", integer=True, positive=True)  # model width
h = sympy.Symbol("h", integer=True, positive=True)  # attention heads; head size is d/h
e = sympy.Symbol("e", integer=True, positive=True)  # bytes per element of the compute dtype
L = sympy.Symbol("L", integer=True, positive=True)  # transformer layers
V = sympy.Symbol("V", integer=True, positive=True)  # vocabulary size
P = sympy.Symbol("P", integer=True, positive=True)  # learned positions (context length)
f = sympy.Symbol("f", integer=True, positive=True)  # MLP hidden width
r = sympy.Symbol("r", integer=True, positive=True)  # LoRA rank
d_in = sympy.Symbol("d_in", integer=True, positive=True)  # a linear layer's input width
d_out = sympy.Symbol("d_out", integer=True, positive=True)  # a linear layer's output width
R = sympy.Symbol("R", integer=True, positive=True)  # image side, H = W = R (r is LoRA's rank)
p = sympy.Symbol("p", integer=True, positive=True)  # ViT patch side
C = sympy.Symbol("C", integer=True, positive=True)  # image channels
K = sympy.Symbol("K", integer=True, positive=True)  # classes
w = sympy.Symbol("w", integer=True, positive=True)  # ResNet width: channels of its first stage
D = tuple(sympy.Symbol(f"D{i}", integer=True, positive=True) for i in (1, 2, 3, 4))  # blocks/stage
G = sympy.Symbol("G", integer=True, positive=True)  # key/value heads (grouped-query attention)
W = sympy.Symbol("W", integer=True, positive=True)  # sliding-window width (keys per query)
M = sympy.Symbol("M", integer=True, positive=True)  # on-chip memory (bytes) of a tiled kernel
M_dev = sympy.Symbol("M_dev", integer=True, positive=True)  # a device's memory budget (bytes)
m = sympy.Symbol("m", integer=True, positive=True)  # context tokens of cross-attention (M is SRAM)
d_c = sympy.Symbol("d_c", integer=True, positive=True)  # context width of cross-attention
C_in = sympy.Symbol("C_in", integer=True, positive=True)  # a convolution's input channels
C_out = sympy.Symbol("C_out", integer=True, positive=True)  # a convolution's output channels
k = sympy.Symbol("k", integer=True, positive=True)  # convolution kernel side (K is classes)
s = sympy.Symbol("s", integer=True, positive=True)  # convolution stride
f_g = sympy.Symbol("f_g", integer=True, positive=True)  # a gated MLP's hidden width (SwiGLU)
g = sympy.Symbol("g", integer=True, positive=True)  # GroupNorm's channel groups
T = sympy.Symbol("T", integer=True, positive=True)  # video frames (time steps)
S = sympy.Symbol("S", integer=True, positive=True)  # patch tokens per frame, (R/p)²; √S = R/p
w_t = sympy.Symbol("w_t", integer=True, positive=True)  # 3D attention window: frames
w_h = sympy.Symbol("w_h", integer=True, positive=True)  # 3D attention window: token rows
w_w = sympy.Symbol("w_w", integer=True, positive=True)  # 3D attention window: token columns
p_t = sympy.Symbol("p_t", integer=True, positive=True)  # tubelet frames: a video patch's depth
c = sympy.Symbol("c", integer=True, positive=True)  # chunks of a chunked loss
