# bash completion for sdepmd                                       -*- shell-script -*-
# Installed as $prefix/share/bash-completion/completions/sdepmd.

_sdepmd() {
    local cur prev words cword
    _init_completion 2>/dev/null || {
        COMPREPLY=()
        cur=${COMP_WORDS[COMP_CWORD]}
        prev=${COMP_WORDS[COMP_CWORD-1]}
        words=("${COMP_WORDS[@]}")
        cword=$COMP_CWORD
    }
    local commands="names status metrics doctor attach detach reload adopt listen allow"
    local daemon_flags="-port -address -d -debug -relaxed_command_check -systemd -daemon -packet_timeout -delay_accept
        -delay_write -request_budget -max_connections -max_connections_per_peer -max_registrations -fdstore_max
        -control_socket -names -kill -stop -dump -started -help -version"
    local command=""
    local w
    for w in "${words[@]:1:cword-1}"; do
        case " $commands " in *" $w "*) command=$w; break ;; esac
    done

    case $prev in
        -port|--port|-packet_timeout|-delay_accept|-delay_write|-request_budget|-max_connections|-max_connections_per_peer|-max_registrations|-fdstore_max|-address|-stop)
            return ;;
        -control_socket|--control_socket|--output|--root)
            COMPREPLY=($(compgen -f -- "$cur")); return ;;
    esac

    case $command in
        "")
            if [[ $cur == -* ]]; then
                COMPREPLY=($(compgen -W "$daemon_flags" -- "$cur"))
            else
                COMPREPLY=($(compgen -W "$commands" -- "$cur"))
            fi ;;
        names|status) COMPREPLY=($(compgen -W "--port --json --control_socket --help" -- "$cur")) ;;
        metrics) COMPREPLY=($(compgen -W "--port --control_socket --output --help" -- "$cur")) ;;
        doctor) COMPREPLY=($(compgen -W "--port --json --snapshot --help" -- "$cur")) ;;
        attach|detach)
            if [[ $cur == -* ]]; then
                local opts="--dry-run --root --help"
                [[ $command == attach ]] && opts="$opts --wants --force"
                COMPREPLY=($(compgen -W "$opts" -- "$cur"))
            else
                # Running services: the Erlang apps are among them.
                COMPREPLY=($(compgen -W "$(systemctl list-units --type=service --state=running --plain --no-legend 2>/dev/null | awk '{print $1}')" -- "$cur"))
            fi ;;
        reload) COMPREPLY=($(compgen -W "--port --control_socket --help" -- "$cur")) ;;
        adopt) COMPREPLY=($(compgen -W "--port --control_socket --pid --dry-run --no-start --help" -- "$cur")) ;;
        listen) COMPREPLY=($(compgen -W "--port --dry-run --later --reset --root --help" -- "$cur")) ;;
        allow) COMPREPLY=($(compgen -W "--dry-run --reset --root --help localhost" -- "$cur")) ;;
    esac
}
complete -F _sdepmd sdepmd
