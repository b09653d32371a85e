# ezpz rank shim: the launcher runs `sh /path/to/ezpz/launch/rank.sh CMD [ARGS...]` on every rank.
#
# POSIX sh on purpose: a shell start costs about a millisecond where a Python
# start costs tens (and, from a shared file system at 10,000 nodes, an import
# storm).  It reads the rank from the launcher's own variables (the same
# lists, in the same order, as ezpz.ranks.rank_info), exports torchrun's
# variables, runs CMD in the foreground and reports how CMD ended as one
# record line on stderr for `ezpz launch`'s reader:
#
#     <RS>ezpz start RANK LOCAL_RANK HOST STEP   before CMD starts (STEP: Slurm job.step or -)
#     <RS>ezpz exit RANK STATUS HOST     after it ended (STATUS > 128: signal STATUS-128)
#     <RS>ezpz noexec RANK LOCAL_RANK HOST STATUS NAME   CMD cannot start (127 not found, 126 not executable)
#
# (<RS> is the ASCII record separator, 0x1e.)  Signals: every launcher ezpz
# renders (hydra, Open MPI, srun) and ezpz itself deliver a signal to every
# process of the rank, so CMD gets its own copy; the shim only has to survive
# them (":" traps, which CMD does not inherit) to report CMD's exit status.
# CMD runs in the foreground so that SIGINT is not ignored in it, as it would
# be in a background job of a non-interactive shell.

_ezpz_fail() { # _ezpz_fail WHAT [HINT]: one error line, exit 2
    printf 'error: %s; %s (ezpz rank shim)\n' "$1" "${2:-unset it or fix the launcher}" >&2
    exit 2
}

# _ezpz_pick VAR...: set _v to the first non-blank variable's value (blanks
# trimmed, Slurm's "2(x3)" or "2,1" cut to "2") and _src to its name; both
# empty if none.
_ezpz_pick() {
    _v=
    _src=
    for _name in "$@"; do
        eval "_raw=\${$_name-}"
        # shellcheck disable=SC2086  # word splitting trims the blanks
        set -f
        set -- $_raw
        set +f
        _raw="$*"
        [ -n "$_raw" ] || continue
        _raw=${_raw%%(*}
        _raw=${_raw%%,*}
        case $_raw in
            *[!0-9]*) _ezpz_fail "$_name is not an integer (given '$_raw')" ;;
        esac
        while :; do
            case $_raw in
                0?*) _raw=${_raw#0} ;;
                *) break ;;
            esac
        done
        _v=$_raw
        _src=$_name
        return 0
    done
}

# A RANK/WORLD_SIZE/... left over from an outer job must not mask the launcher's.
_ezpz_pick PMI_RANK PALS_RANKID OMPI_COMM_WORLD_RANK PMIX_RANK SLURM_PROCID
_rank=${_v:-0}
_rank_src=${_src:-default}
_ezpz_pick PMI_SIZE OMPI_COMM_WORLD_SIZE SLURM_NTASKS
_world=${_v:-1}
_world_given=$_v
_ezpz_pick PALS_LOCAL_RANKID PMI_LOCAL_RANK MPI_LOCALRANKID OMPI_COMM_WORLD_LOCAL_RANK SLURM_LOCALID
_lrank=${_v:-0}
_ezpz_pick PALS_LOCAL_SIZE PMI_LOCAL_SIZE MPI_LOCALNRANKS OMPI_COMM_WORLD_LOCAL_SIZE SLURM_NTASKS_PER_NODE EZPZ_LOCAL_WORLD_SIZE
if [ -n "$_v" ]; then
    _lsize=$_v
    [ "$_lsize" -le "$_world" ] || _lsize=$_world
elif [ -n "$_world_given" ]; then
    _lsize=$_world
else
    _lsize=1
fi
[ "$_world" -ge 1 ] || _ezpz_fail "world size must be at least 1 (given '$_world')"
[ "$_rank" -lt "$_world" ] || _ezpz_fail "rank is outside the world (given 'rank=$_rank world_size=$_world', rank read from $_rank_src)"
[ "$_lsize" -ge 1 ] && [ "$_lrank" -lt "$_lsize" ] ||
    _ezpz_fail "local rank is outside the node (given 'local_rank=$_lrank local_world_size=$_lsize')"

export RANK="$_rank" WORLD_SIZE="$_world" LOCAL_RANK="$_lrank" LOCAL_WORLD_SIZE="$_lsize"
# torchrun's agent variables.  ezpz places ranks in blocks of LOCAL_WORLD_SIZE
# per host, so the host's index is RANK / LOCAL_WORLD_SIZE (srun says it itself).
export GROUP_RANK="${SLURM_NODEID:-$((_rank / _lsize))}"
export GROUP_WORLD_SIZE="$(((_world + _lsize - 1) / _lsize))"
export ROLE_NAME=default ROLE_RANK="$_rank" ROLE_WORLD_SIZE="$_world"
# torch's @record decorator writes a failing rank's traceback to this file,
# where the run directory is visible (a shared file system); the summary reads it.
[ -z "${TORCHELASTIC_ERROR_FILE-}" ] && [ -d "${EZPZ_RUN_DIR-}" ] &&
    export TORCHELASTIC_ERROR_FILE="$EZPZ_RUN_DIR/rank-$_rank.error.json"
[ -z "${EZPZ_ATTEMPT-}" ] || export TORCHELASTIC_RESTART_COUNT="$EZPZ_ATTEMPT"

# Threads per rank: the plan's default (cores / ranks per host), unless set.
[ -n "${OMP_NUM_THREADS-}" ] || [ -z "${EZPZ_OMP_NUM_THREADS-}" ] || export OMP_NUM_THREADS="$EZPZ_OMP_NUM_THREADS"

# Device mask (EZPZ_DEVICE_VAR, e.g. CUDA_VISIBLE_DEVICES; EZPZ_DEVICE_MAP, one
# entry per local rank, as ezpz.ranks.device_env reads them): this rank's entry.
# When the variable is already set (Slurm's CUDA_VISIBLE_DEVICES for a step, a
# user's 4,5,6,7), an entry counts the devices it lists: 4,5,6,7 and 1 give 5.
_ezpz_nth() { # _ezpz_nth N LIST: set _got to item N (from 0) of comma LIST, blank items dropped, blanks around items too
    _got=
    _n=0
    _old_ifs=$IFS
    IFS=,
    set -f
    for _it in $2; do
        case $_it in *[!\ ]*) ;; *) continue ;; esac
        _it=${_it#"${_it%%[! ]*}"}
        _it=${_it%"${_it##*[! ]}"}
        [ "$_n" -ne "$1" ] || _got=$_it
        _n=$((_n + 1))
    done
    set +f
    IFS=$_old_ifs
}
if [ -n "${EZPZ_DEVICE_VAR-}" ] && [ -n "${EZPZ_DEVICE_MAP-}" ]; then
    case $EZPZ_DEVICE_VAR in
        [!A-Za-z_]* | *[!A-Za-z0-9_]*) _ezpz_fail "EZPZ_DEVICE_VAR is not a variable name (given '$EZPZ_DEVICE_VAR')" ;;
    esac
    _entry=
    _i=0
    for _dev in $EZPZ_DEVICE_MAP; do
        [ "$_i" -ne "$_lrank" ] || _entry=$_dev
        _i=$((_i + 1))
    done
    if [ "$_i" -gt 0 ]; then
        [ -n "$_entry" ] || _ezpz_fail "local rank has no entry in the device mask (given 'local_rank=$_lrank EZPZ_DEVICE_MAP=$EZPZ_DEVICE_MAP')" \
            "the launcher put more ranks on this node than planned; check -ppn"
        eval "_seen=\${$EZPZ_DEVICE_VAR-}"
        case $_seen in *[!,\ ]*) ;; *) _seen= ;; esac
        if [ -n "$_seen" ]; then
            _mapped=
            _old_ifs=$IFS
            IFS=,
            set -f
            for _item in $_entry; do
                IFS=$_old_ifs
                _head=${_item%%.*}
                _ezpz_nth 0 "$_seen"
                case $_head in '' | *[!0-9]*) _got= ;; *) _ezpz_nth "$_head" "$_seen" ;; esac
                [ -n "$_got" ] || _ezpz_fail "$EZPZ_DEVICE_VAR lists fewer devices than the device mask needs (given '$EZPZ_DEVICE_VAR=$_seen mask entry $_item')" \
                    "give the job every device of the node, or unset $EZPZ_DEVICE_VAR"
                case $_item in
                    *.*)
                        case $_got in *.*) _ezpz_fail "$EZPZ_DEVICE_VAR already names tiles (given '$EZPZ_DEVICE_VAR=$_seen')" "use --device-mask ze" ;; esac
                        _got="$_got.${_item#*.}"
                        ;;
                esac
                _mapped="${_mapped:+$_mapped,}$_got"
                IFS=,
            done
            set +f
            IFS=$_old_ifs
            _entry=$_mapped
        fi
        export "$EZPZ_DEVICE_VAR=$_entry"
    fi
fi

# Live output and stacks: unbuffered Python unless the user says otherwise, a
# traceback on a crash, and (through the sitecustomize beside this file) all
# threads' stacks on EZPZ_DUMP_SIGNAL when `ezpz launch --timeout` fires.
export PYTHONUNBUFFERED="${PYTHONUNBUFFERED-1}" PYTHONFAULTHANDLER="${PYTHONFAULTHANDLER-1}"
_here=${0%/*}
[ "$_here" != "$0" ] || _here=.
export PYTHONPATH="$_here/_hook${PYTHONPATH:+:$PYTHONPATH}" EZPZ_HOOK_PATH="$_here/_hook"

# The host as the launcher names it (hydra's PMI_HOSTNAME is n1/n2 under
# "-launcher fork -hosts n1,n2"), else the kernel's name, read without a process.
_host=${SLURMD_NODENAME:-${PMI_HOSTNAME-}}
[ -n "$_host" ] || read -r _host </proc/sys/kernel/hostname 2>/dev/null || _host=${HOSTNAME:-?}

if [ $# -eq 0 ]; then
    printf 'error: no command to run (given nothing); ezpz rank shim usage: sh rank.sh CMD [ARGS...]\n' >&2
    exit 2
fi
_st=
case $1 in
    */*) [ -e "$1" ] || _st=127; [ -n "$_st" ] || [ -x "$1" ] || _st=126 ;;
    *) command -v -- "$1" >/dev/null 2>&1 || _st=127 ;;
esac
if [ -n "$_st" ]; then
    printf '\036ezpz noexec %s %s %s %s %s\n' "$_rank" "$_lrank" "$_host" "$_st" "$1" >&2
    exit "$_st"
fi

trap : TERM INT HUP USR2 ALRM QUIT
_step=-
[ -z "${SLURM_STEP_ID-}" ] || _step="${SLURM_JOB_ID-}.$SLURM_STEP_ID"
printf '\036ezpz start %s %s %s %s\n' "$_rank" "$_lrank" "$_host" "$_step" >&2
# CMD keeps the real stderr (fd 3 here); the shell's own "Killed" notice for a
# CMD ended by a signal goes nowhere, since the exit record says it.
exec 3>&2 2>/dev/null
(exec "$@" 2>&3 3>&-)
_st=$?
printf '\036ezpz exit %s %s %s\n' "$_rank" "$_st" "$_host" >&3
exit "$_st"
