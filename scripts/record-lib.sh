# What scripts/record-*.sh share (sourced, not run): C, the complexo command line ($COMPLEXO,
# else the caller's $default); run, which records one profile and counts a refusal or failure
# in $failed instead of stopping the script.
set -uo pipefail
read -r -a C <<< "${COMPLEXO:-$default}"
failed=0

run() {
    echo "+ complexo $*" >&2
    if ! "${C[@]}" "$@" > /dev/null; then
        echo "  (not recorded: see the line above)" >&2
        failed=$((failed + 1))
    fi
}
