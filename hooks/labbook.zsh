# labbook shell hook for zsh (installed by `labbook hooks install --shell zsh`).
#
# Before a command that looks like a training run starts, runs `labbook check` on
# it and prints the warnings (past runs like it that failed, diverged or carry
# lessons) above the command's output. The check gets LABBOOK_HOOK_TIMEOUT seconds
# (0.3) and is killed after that: the shell is never held up longer.
#
# Settings (environment variables):
#   LABBOOK_HOOK_CMD       how to run labbook (default: labbook)
#   LABBOOK_HOOK_TIMEOUT   seconds the check may take (default: 0.3)
#   LABBOOK_HOOK_PATTERN   extended regex of the commands to check (default below)
#   LABBOOK_HOOK_DISABLE   set to 1 to switch the hook off for this shell

[[ -n ${ZSH_VERSION:-} ]] || return 0
[[ -z ${_LABBOOK_HOOK_LOADED:-} ]] || return 0
typeset -g _LABBOOK_HOOK_LOADED=1

: ${LABBOOK_HOOK_CMD:=labbook}
: ${LABBOOK_HOOK_TIMEOUT:=0.3}
if [[ -z ${LABBOOK_HOOK_PATTERN:-} ]]; then
    () {
        local s='[[:space:]]' n='[^[:space:]]'
        typeset -g LABBOOK_HOOK_PATTERN="(^|[;&|(]|$s)(python[0-9.]*$s+(.*$s)?$n*train$n*\\.py|python[0-9.]*$s+(.*$s)?-m$s*$n*train|torchrun|accelerate$s+launch|deepspeed|sbatch)($s|\$)"
    }
fi

_labbook_hook_preexec() {
    # $1: the command line as typed
    emulate -L zsh
    local line=$1 out
    [[ ${LABBOOK_HOOK_DISABLE:-0} == 1 ]] && return 0
    [[ $line =~ $LABBOOK_HOOK_PATTERN ]] || return 0
    (( $+commands[timeout] )) || return 0
    out=$(timeout -k 0.1 $LABBOOK_HOOK_TIMEOUT ${(z)LABBOOK_HOOK_CMD} check --hook --line "$line" 2>/dev/null </dev/null)
    [[ -n $out ]] && print -r -- "$out" >&2
    return 0
}

autoload -Uz add-zsh-hook
add-zsh-hook preexec _labbook_hook_preexec
