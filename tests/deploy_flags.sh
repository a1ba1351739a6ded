#!/bin/sh
# deploy_flags.sh COMPATD DEPLOY_DIR - every flag the deployment files give
# compatd exists: it takes the `--flag`s of the systemd unit's ExecStart
# lines, the Containerfile's ENTRYPOINT and CMD, and the `args:` and
# `command:` of the Kubernetes manifests, and looks each up in
# `compatd serve --help`.  Fails listing the missing ones (and when a file
# yields no flag at all, which would mean this script no longer reads it).
set -u

if [ $# -ne 2 ]; then
    echo "usage: $0 COMPATD DEPLOY_DIR" >&2
    exit 2
fi
compatd=$1
deploy=$2

help=$("$compatd" serve --help) || {
    echo "deploy_flags: \"$compatd serve --help\" failed" >&2
    exit 1
}

# Prints the flags of one file, one per line, without any =value.
flags_of() {
    case $1 in
    *.service)
        # ExecStart=, ExecStartPre=, ... with their continuation lines.
        awk '
            /^[ \t]*#/ { next }
            /^Exec[A-Za-z]*=/ { on = 1 }
            on { print; on = /\\[ \t]*$/ }
        ' "$1"
        ;;
    *Containerfile | *Dockerfile)
        awk '
            /^[ \t]*#/ { next }
            /^(ENTRYPOINT|CMD)[ \t]/ { on = 1 }
            on { print; on = /\\[ \t]*$/ }
        ' "$1"
        ;;
    *.yaml | *.yml)
        # "args:" / "command:" followed by a block of "- item" lines, or
        # with an inline [list].
        awk '
            /^[ \t]*#/ { next }
            on {
                if ($0 ~ /^[ \t]*$/) next
                if ($0 ~ /^[ \t]*- / && match($0, /[^ ]/) - 1 >= key_indent) { print; next }
                on = 0
            }
            /^[ \t]*(- )?(args|command):/ {
                key_indent = match($0, /(args|command):/) - 1
                if ($0 ~ /:[ \t]*\[/) print
                else on = 1
            }
        ' "$1"
        ;;
    esac | grep -oE -- '(^|[ "'"'"'[,])--[a-z0-9][a-z0-9-]*' | sed -E 's/^[^-]*//'
}

checked=0
missing=
files=
for f in "$deploy"/*.service "$deploy"/Containerfile "$deploy"/k8s/*.yaml; do
    [ -f "$f" ] || continue
    case $f in *example*) continue ;; esac
    found=$(flags_of "$f" | sort -u)
    if [ -z "$found" ]; then
        echo "deploy_flags: no compatd flags found in $f" >&2
        missing="$missing (none-found-in:$f)"
        continue
    fi
    files="$files ${f#"$deploy"/}"
    for flag in $found; do
        checked=$((checked + 1))
        if printf '%s\n' "$help" | grep -qE -- "(^|[ ,])$flag([ =,]|\$)"; then
            echo "ok      $flag  (${f#"$deploy"/})"
        else
            echo "MISSING $flag  (${f#"$deploy"/})"
            missing="$missing $flag(${f#"$deploy"/})"
        fi
    done
done

if [ -z "$files" ]; then
    echo "deploy_flags: no deployment files in $deploy" >&2
    exit 1
fi
if [ -n "$missing" ]; then
    echo "deploy_flags: not in \`compatd serve --help\`:$missing" >&2
    exit 1
fi
echo "deploy_flags: all $checked flags of$files exist"
