#!/bin/bash
# slurm/train.sbatch requeue logic without Slurm: SIGUSR1 to the batch shell -> forwarded to the ranks
# (mpirun) -> agreed stop, exit 0 -> `scontrol requeue <array id>_<task id>` (not the whole array);
# with MAX_RESTARTS used up the same stop fails the job (exit 3, a message) instead of ending it
# "COMPLETED" without an adapter.
#   slurm_requeue.sh SBATCH_FILE TEST_DIST_BINARY "MPIRUN FLAGS"
set -u
SB=$1; WORKER=$2; FLAGS=$3
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
mkdir -p "$T/bin"
printf '#!/bin/sh\necho "$@" >> %s/scontrol.log\n' "$T" > "$T/bin/scontrol"
# a stand-in for qalign: --print-config answers like qalign train, a run is test_dist's stop loop
cat > "$T/qalign" <<EOF
#!/bin/sh
case "\$*" in
*--print-config*) printf 'model:\n  path: m\n  device: cpu\ncheckpoint:\n  dir: %s/run\n' "$T"; exit 0 ;;
esac
exec $WORKER stop-loop $T/ready
EOF
chmod +x "$T/bin/scontrol" "$T/qalign"
fail=0
run() {  # run RESTART_COUNT MAX_RESTARTS: the batch script, SIGUSR1 once the ranks are in their loop
    rm -f "$T/ready" "$T/scontrol.log"
    PATH="$T/bin:$PATH" SLURM_JOB_ID=40 SLURM_ARRAY_JOB_ID=40 SLURM_ARRAY_TASK_ID=3 SLURM_NTASKS=2 \
      SLURM_RESTART_COUNT=$1 MAX_RESTARTS=$2 LAUNCH=mpirun MPIRUN_FLAGS="$FLAGS" QALIGN="$T/qalign" \
      RUN_DIR="$T/run" bash "$SB" > "$T/out.log" 2>&1 &
    local pid=$!
    for _ in $(seq 300); do [ -e "$T/ready" ] && break; sleep 0.1; done
    kill -USR1 $pid
    wait $pid
    rc=$?
    cat "$T/out.log"
    grep -q "agreed stop" "$T/out.log" || { echo "FAIL: the ranks did not agree to stop"; fail=1; }
}
run 0 20
[ "$rc" -eq 0 ] || { echo "FAIL: batch script exit $rc (want 0)"; fail=1; }
[ "$(cat "$T/scontrol.log" 2>/dev/null)" = "requeue 40_3" ] || { echo "FAIL: scontrol got '$(cat "$T/scontrol.log" 2>/dev/null)' (want 'requeue 40_3')"; fail=1; }
run 2 2
[ "$rc" -eq 3 ] || { echo "FAIL: requeues used up: batch script exit $rc (want 3)"; fail=1; }
[ -e "$T/scontrol.log" ] && { echo "FAIL: requeues used up, but scontrol was called: $(cat "$T/scontrol.log")"; fail=1; }
grep -q "MAX_RESTARTS=2 requeues used up" "$T/out.log" || { echo "FAIL: no message about the used-up requeues"; fail=1; }
[ $fail -eq 0 ] && echo "slurm_requeue: ok (requeue 40_3 after an agreed stop; exit 3 with the requeues used up)"
exit $fail
