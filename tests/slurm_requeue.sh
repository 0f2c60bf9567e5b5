#!/bin/bash
# slurm/train.sbatch requeue logic without Slurm: SIGUSR1 to the batch shell -> forwarded to the ranks
# (mpirun) -> agreed stop, exit 0 -> `scontrol requeue <array id>_<task id>` (not the whole array).
#   slurm_requeue.sh SBATCH_FILE TEST_DIST_BINARY "MPIRUN FLAGS"
set -u
SB=$1; WORKER=$2; FLAGS=$3
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
mkdir -p "$T/bin"
printf '#!/bin/sh\necho "$@" >> %s/scontrol.log\n' "$T" > "$T/bin/scontrol"
printf '#!/bin/sh\nexec %s stop-loop %s/ready\n' "$WORKER" "$T" > "$T/qalign"
chmod +x "$T/bin/scontrol" "$T/qalign"
PATH="$T/bin:$PATH" SLURM_JOB_ID=40 SLURM_ARRAY_JOB_ID=40 SLURM_ARRAY_TASK_ID=3 SLURM_NTASKS=2 \
  LAUNCH=mpirun MPIRUN_FLAGS="$FLAGS" QALIGN="$T/qalign" RUN_DIR="$T/run" bash "$SB" > "$T/out.log" 2>&1 &
PID=$!
for _ in $(seq 300); do [ -e "$T/ready" ] && break; sleep 0.1; done
kill -USR1 $PID
wait $PID; rc=$?
cat "$T/out.log"
fail=0
[ "$rc" -eq 0 ] || { echo "FAIL: batch script exit $rc (want 0)"; fail=1; }
grep -q "agreed stop" "$T/out.log" || { echo "FAIL: the ranks did not agree to stop"; fail=1; }
[ "$(cat "$T/scontrol.log" 2>/dev/null)" = "requeue 40_3" ] || { echo "FAIL: scontrol got '$(cat "$T/scontrol.log" 2>/dev/null)' (want 'requeue 40_3')"; fail=1; }
[ $fail -eq 0 ] && echo "slurm_requeue: ok (requeue 40_3 after an agreed stop)"
exit $fail
