# labbook shell hook for bash (installed by `labbook hooks install --shell bash`).
#
# Before a command that looks like a training run starts, runs `labbook check` on
# it and prints the warnings (past runs like it that failed, diverged or carry
# lessons) above the command's output. The check gets LABBOOK_HOOK_TIMEOUT seconds
# (0.3) and is killed after that: the shell is never held up longer.
#
# Settings (environment variables, set them before this file is sourced or later):
#   LABBOOK_HOOK_CMD       how to run labbook (default: labbook)
#   LABBOOK_HOOK_TIMEOUT   seconds the check may take (default: 0.3)
#   LABBOOK_HOOK_PATTERN   extended regex of the commands to check (default below)
#   LABBOOK_HOOK_DISABLE   set to 1 to switch the hook off for this shell
#
# Mechanism: a DEBUG trap fires before every simple command; the first one after
# each prompt (PROMPT_COMMAND re-arms it) reads the whole line from history.

[ -n "${BASH_VERSION:-}" ] || return 0
[ -z "${_LABBOOK_HOOK_LOADED:-}" ] || return 0
_LABBOOK_HOOK_LOADED=1

: "${LABBOOK_HOOK_CMD:=labbook}"
: "${LABBOOK_HOOK_TIMEOUT:=0.3}"
if [ -z "${LABBOOK_HOOK_PATTERN:-}" ]; then
    _s='[[:space:]]'
    _n='[^[:space:]]'
    LABBOOK_HOOK_PATTERN="(^|[;&|(]|$_s)(python[0-9.]*$_s+(.*$_s)?$_n*train$_n*\\.py|python[0-9.]*$_s+(.*$_s)?-m$_s*$_n*train|torchrun|accelerate$_s+launch|deepspeed|sbatch)($_s|\$)"
    unset _s _n
fi

_labbook_hook_check() {
    # $1: the command line about to run
    local line=$1 out
    [ "${LABBOOK_HOOK_DISABLE:-0}" = 1 ] && return 0
    [[ $line =~ $LABBOOK_HOOK_PATTERN ]] || return 0
    command -v timeout >/dev/null 2>&1 || return 0
    # shellcheck disable=SC2086  # LABBOOK_HOOK_CMD may be "python -m labbook"
    out=$(timeout -k 0.1 "$LABBOOK_HOOK_TIMEOUT" $LABBOOK_HOOK_CMD check --hook --line "$line" 2>/dev/null </dev/null)
    [ -n "$out" ] && printf '%s\n' "$out" >&2
    return 0
}

_labbook_hook_armed=0
_labbook_hook_histno=

_labbook_hook_debug() {
    [ "$_labbook_hook_armed" = 1 ] || return 0
    [ -n "${COMP_LINE:-}" ] && return 0
    case "$BASH_COMMAND" in _labbook_hook_*) return 0 ;; esac
    _labbook_hook_armed=0
    local entry num line
    entry=$(HISTTIMEFORMAT='' builtin history 1 2>/dev/null)
    num=${entry%%[!0-9 ]*}
    num=${num// /}
    line=${entry#*[0-9] }
    line=${line#"${line%%[![:space:]]*}"}
    # No new history entry: the same line again (HISTCONTROL=ignoredups) is checked
    # again; a line history left out (ignorespace) is not confused with the last one.
    if [ -n "$num" ] && [ "$num" = "$_labbook_hook_histno" ] && [[ $line != "$BASH_COMMAND"* ]]; then
        return 0
    fi
    _labbook_hook_histno=$num
    [ -n "$line" ] || line=$BASH_COMMAND
    _labbook_hook_check "$line"
    return 0
}

_labbook_hook_prompt() {
    _labbook_hook_armed=1
}

# Keep a DEBUG trap that was there before.
_labbook_hook_prev_trap=$(trap -p DEBUG)
_labbook_hook_prev_trap=${_labbook_hook_prev_trap#"trap -- '"}
_labbook_hook_prev_trap=${_labbook_hook_prev_trap%"' DEBUG"}
if [ -n "$_labbook_hook_prev_trap" ]; then
    trap "_labbook_hook_debug; $_labbook_hook_prev_trap" DEBUG
else
    trap '_labbook_hook_debug' DEBUG
fi
# Last in PROMPT_COMMAND, so that nothing runs between arming and the user's command.
PROMPT_COMMAND="${PROMPT_COMMAND:+$PROMPT_COMMAND;}_labbook_hook_prompt"
