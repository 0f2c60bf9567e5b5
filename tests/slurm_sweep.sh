#!/usr/bin/env bash
# ctest -L slurm: the tiny sweep on a real single-node Slurm (Debian's slurm-wlm + munge, started here
# with private state directories and free ports, stopped at the end):
#   1. qalign sweep submit of configs/sweeps/tiny.yaml: training arrays, evaluation arrays (aftercorr),
#      base evaluations, the report (afterany);
#   2. a running cell is preempted: its time limit is cut to 1 minute (scontrol update), Slurm sends
#      --signal=B:USR1@60, the cell checkpoints, requeues itself and resumes;
#   3. another running cell is scancel'ed: it leaves a valid checkpoint (qalign ckpt-info);
#   4. submitting again resubmits only the cancelled cell, which resumes from its checkpoint;
#   5. the report's tables agree with the cells' results.json (tests/sweep_check.py);
#   6. slurm/train.sbatch as shipped submits itself with CPU ranks; 2 ranks under mpirun keep a valid
#      checkpoint through scancel;
#   7. submit --local of the same grid gives byte-identical adapters, predictions, losses and report
#      tables (so the preempted and the cancelled cell end where uninterrupted runs end).
# Exit 77 (skip) only when the Slurm packages are missing and cannot be installed.
#   slurm_sweep.sh QALIGN_BINARY SOURCE_DIR ASSETS_DIR
set -u
Q=$1 SRC=$2 ASSETS=$3
T0=$(date +%s)
log() { echo "[$(($(date +%s) - T0)) s] $*"; }

need=(munged slurmctld slurmd sbatch srun scontrol squeue scancel sinfo)
missing=0
for p in "${need[@]}"; do command -v "$p" >/dev/null || missing=1; done
if [ $missing = 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && [ "${QALIGN_SKIP_APT:-0}" != 1 ]; then
    log "installing slurm-wlm and munge"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null 2>&1 ||
        { apt-get update -qq >/dev/null 2>&1 &&
          DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null 2>&1; }
    missing=0
    for p in "${need[@]}"; do command -v "$p" >/dev/null || missing=1; done
fi
if [ $missing = 1 ]; then
    echo "slurm_sweep: SKIP: Slurm (slurm-wlm, munge) is not installed and cannot be installed here"
    exit 77
fi

T=$(mktemp -d /tmp/qalign-slurm.XXXXXX)
chmod 755 "$T"   # munged wants every directory above its socket searchable
D=$T/slurm
mkdir -p "$D/run" "$D/spool" "$D/state" "$D/log"
export SLURM_CONF=$D/slurm.conf
FAIL=0
fail() { echo "FAIL: $*"; FAIL=1; }
die() { echo "FAIL: $*"; exit 1; }

cleanup() {
    # our jobs first (their processes belong to our slurmd), then our daemons, by their pid files
    if [ -f "$D/run/slurmctld.pid" ]; then
        scancel --full $(squeue -h -o %A 2>/dev/null | sort -u) >/dev/null 2>&1
        for _ in $(seq 60); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 1; done
    fi
    for d in slurmd slurmctld munged; do
        [ -f "$D/run/$d.pid" ] && kill "$(cat "$D/run/$d.pid")" 2>/dev/null
    done
    for d in slurmd slurmctld munged; do
        for _ in $(seq 50); do
            [ -f "$D/run/$d.pid" ] && kill -0 "$(cat "$D/run/$d.pid")" 2>/dev/null || break
            sleep 0.1
        done
        if [ -f "$D/run/$d.pid" ] && kill -0 "$(cat "$D/run/$d.pid")" 2>/dev/null; then
            echo "FAIL: $d ($(cat "$D/run/$d.pid")) did not stop"
            kill -9 "$(cat "$D/run/$d.pid")" 2>/dev/null
        fi
    done
    if [ "${KEEP:-0}" = 1 ] || [ $FAIL != 0 ]; then echo "slurm_sweep: files kept in $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT

# ---- the cluster: munge, slurmctld, slurmd on localhost (docs: ../shared/docs/hpc.md §3) ----------
dd if=/dev/urandom of="$D/munge.key" bs=1 count=1024 2>/dev/null
chmod 400 "$D/munge.key"
munged --socket="$D/run/munge.sock" --key-file="$D/munge.key" --pid-file="$D/run/munged.pid" \
       --log-file="$D/log/munged.log" --seed-file="$D/run/munged.seed" || die "munged did not start"
port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
H=$(hostname -s)
CPUS=$(nproc)
MEM=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
cat > "$SLURM_CONF" <<EOF
ClusterName=qalign-test
SlurmctldHost=$H(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire: a requeued job may start again after 5 s instead of 120 s
AuthInfo=socket=$D/run/munge.sock,cred_expire=5
SlurmctldPort=$(port)
SlurmdPort=$(port)
SlurmctldPidFile=$D/run/slurmctld.pid
SlurmdPidFile=$D/run/slurmd.pid
SlurmdSpoolDir=$D/spool
StateSaveLocation=$D/state
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SchedulerType=sched/backfill
# a pending job is looked at every 2 s (default 60 s): a requeued or dependent job starts soon
SchedulerParameters=sched_interval=2,bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$D/jobcomp.txt
SwitchType=switch/none
MailProg=/bin/true
KillWait=30
NodeName=$H NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=$H Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
slurmctld || die "slurmctld did not start ($D/log/slurmctld.log)"
slurmd || die "slurmd did not start ($D/log/slurmd.log)"
for _ in $(seq 100); do sinfo -h -o %T 2>/dev/null | grep -q idle && break; sleep 0.2; done
sinfo -h -o %T | grep -q idle || die "the node did not become idle: $(sinfo 2>&1)"
log "Slurm up: $H, $CPUS CPUs, $MEM MiB ($D)"

# ---- the models of the demo and the sweep -----------------------------------------------------------
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
"$Q" init-model --arch qwen2 --tokenizer "$ASSETS/tokenizers/qwen1_5-qwen2.tokenizer.json" --seed 1 \
    --out "$T/models/model" >/dev/null || die "init-model qwen2"
"$Q" init-model --arch mistral --tokenizer "$ASSETS/tokenizers/mistral-7b-v0.1.tokenizer.json" --seed 1 \
    --out "$T/models/model-mistral" >/dev/null || die "init-model mistral"
cd "$SRC" || die "cd $SRC"
GRID=configs/sweeps/tiny.yaml
SETS=(--set "models_dir=$T/models" --set "data_dir=$ASSETS/paper-data")
SW=$T/sw-slurm
sweep() { "$Q" sweep "$1" "$GRID" "${SETS[@]}" --set "dir=$SW" "${@:2}"; }
wait_idle() {  # no job of ours left in the queue
    for _ in $(seq "$1"); do [ -z "$(squeue -h)" ] && return 0; sleep 1; done
    return 1
}
cell_id() {  # the id (name@hash) of a cell, from plan.json
    python3 -c 'import json, sys
for c in json.load(open(sys.argv[1]))["cells"]:
    if c["name"] == sys.argv[2]: print(c["id"])' "$SW/plan.json" "$1"
}
job_ref() {  # the Slurm reference <array>_<task> of a cell's training in submission 1 (slurm/jobs.tsv)
    awk -F'\t' -v id="$1" '$1 == 1 && $2 == "train" { n = split($5, c, " "); for (i = 1; i <= n; i++)
        if (c[i] == id) print $3 "_" (i - 1) }' "$SW/slurm/jobs.tsv"
}
rank_pid() {  # the training process of a cell
    ps -eo pid=,args= | grep -F "train --config $SW/cells/$1/cell.yaml" | grep -v grep | awk '{print $1}' | head -1
}
steps_of() { grep -c '"loss"' "$SW/cells/$1/metrics.jsonl" 2>/dev/null || true; }
# wait until cell $1 trains at step >= 2 (its process is there); fail if it finishes first
wait_training() {
    for _ in $(seq 9000); do
        if [ -n "$(rank_pid "$1")" ] && [ "$(steps_of "$1")" -ge 2 ] 2>/dev/null; then return 0; fi
        [ -f "$SW/cells/$1/adapter/adapter_model.safetensors" ] && return 1
        sleep 0.1
    done
    return 1
}

log "plan + submit"
sweep plan > "$T/plan.txt" || { cat "$T/plan.txt"; die "sweep plan"; }
sweep submit > "$T/submit1.txt" 2>&1 || { cat "$T/submit1.txt"; die "sweep submit"; }
cat "$T/submit1.txt"
[ "$(grep -c '^  sbatch' "$T/submit1.txt")" = 7 ] || fail "the first submission should be 7 sbatch calls (2 training arrays, 2 evaluation arrays, 2 base evaluations, the report)"
grep -q -- '--dependency=aftercorr:' "$T/submit1.txt" || fail "no aftercorr evaluation array"
grep -q -- '--dependency=afterany:' "$T/submit1.txt" || fail "no afterany report job"

# ---- scancel of a running cell: a valid checkpoint stays ---------------------------------------------
C=tiny-mistral/zh+es/s1
CRUN=$SW/cells/$C
CJOB=$(job_ref "$(cell_id "$C")")
wait_training "$C" || die "cell $C never trained with steps left (see $CRUN/train.log)"
CPID=$(rank_pid "$C")
kill -STOP "$CPID"   # hold it mid-training
log "scancel $CJOB ($C at step $(steps_of "$C"))"
scancel "$CJOB" || fail "scancel $CJOB"
kill -CONT "$CPID"
for _ in $(seq 120); do kill -0 "$CPID" 2>/dev/null || break; sleep 0.5; done
kill -0 "$CPID" 2>/dev/null && fail "the cancelled rank is still alive"
for _ in $(seq 60); do grep -q 'qalign: cancelled (SIGTERM)' "$CRUN/train.log" && break; sleep 0.5; done
grep -q 'qalign: cancelled (SIGTERM)' "$CRUN/train.log" || fail "$C: no 'cancelled' line in train.log"
"$Q" ckpt-info "$CRUN" > "$T/ckpt.txt" 2>&1 || { cat "$T/ckpt.txt"; fail "$C: the checkpoint after scancel is not valid"; }
[ -f "$CRUN/adapter/adapter_model.safetensors" ] && fail "$C finished although it was cancelled mid-training"

# ---- preemption: the time limit cut to 1 min, Slurm's USR1 60 s before it -----------------------------
P=tiny-qwen/zh+es/s1
PRUN=$SW/cells/$P
PJOB=$(job_ref "$(cell_id "$P")")
wait_training "$P" || die "cell $P never trained with steps left (see $PRUN/train.log)"
PPID_=$(rank_pid "$P")
kill -STOP "$PPID_"   # hold it mid-training until the signal is there
log "preempting $P (job $PJOB, step $(steps_of "$P")): TimeLimit=1"
scontrol update JobId="$PJOB" TimeLimit=1 || fail "scontrol update TimeLimit"
for _ in $(seq 120); do grep -q 'SIGUSR1' "$PRUN/train.log" && break; sleep 0.5; done
grep -q 'SIGUSR1' "$PRUN/train.log" || fail "no SIGUSR1 reached $P within 60 s"
kill -CONT "$PPID_"
for _ in $(seq 120); do grep -q 'requeueing' "$PRUN/train.log" && break; sleep 0.5; done
grep -q "requeueing $PJOB" "$PRUN/train.log" || fail "$P did not requeue itself (train.log: $(tail -3 "$PRUN/train.log"))"
scontrol update JobId="$PJOB" TimeLimit=10 || fail "restoring the time limit of $PJOB"
log "$P requeued; time limit restored"

log "waiting for the first submission to finish"
wait_idle 900 || die "jobs still queued after 15 min: $(squeue)"
sweep status > "$T/status1.txt"
cat "$T/status1.txt"
grep -q "5 done, 0 running, 0 queued, 1 failed" "$T/status1.txt" || fail "want 5 done and 1 failed after the scancel"
grep "^$C@" "$T/status1.txt" | grep -q 'failed.*cancelled' || fail "$C is not reported failed with its 'cancelled' line"
grep -q "restart 1" "$PRUN/train.log" || fail "$P did not restart after its requeue"
grep -q "resumed from" "$PRUN/train.log" || fail "$P did not resume from its checkpoint"

# ---- resubmit: only the cancelled cell -------------------------------------------------------------
sweep submit > "$T/submit2.txt" 2>&1 || { cat "$T/submit2.txt"; die "sweep submit (again)"; }
cat "$T/submit2.txt"
grep -q "5 done, 0 queued or running, 1 to train, 0 to evaluate; 0 base" "$T/submit2.txt" ||
    fail "the second submission should train only the cancelled cell"
[ "$(awk -F'\t' '$1 == 2 && $2 == "train"' "$SW/slurm/jobs.tsv" | cut -f5)" = "$(cell_id "$C")" ] ||
    fail "the resubmitted training array is not exactly $C: $(awk -F'\t' '$1 == 2' "$SW/slurm/jobs.tsv")"
wait_idle 600 || die "the resubmitted jobs did not finish: $(squeue)"
sweep status > "$T/status2.txt"
cat "$T/status2.txt"
grep -q "6 done" "$T/status2.txt" || fail "want 6 done after the resubmission"
grep -q "resumed from" "$CRUN/train.log" || fail "$C did not resume from the checkpoint scancel left"
ls "$SW"/logs/report-*.out >/dev/null 2>&1 || fail "no report job ran"
python3 "$SRC/tests/sweep_check.py" "$SW" || fail "the report's tables disagree with the cells' results.json"

# ---- slurm/train.sbatch as shipped: it submits itself (CPU ranks for model.device cpu); 2 ranks under
# mpirun; scancel leaves a checkpoint committed by the stop (no periodic ones: checkpoint.every 1000) and
# the job ends once the ranks have exited (mpirun itself would linger 2 x odls_base_sigkill_timeout)
python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["cells"][0]["config"], end="")' "$SW/plan.json" > "$T/mp.yaml"
MP=$T/mp-run
(cd "$T" && RANKS=2 CPUS=1 LAUNCH=mpirun QALIGN=$Q SBATCH_FLAGS="--time=10" bash "$SRC/slurm/train.sbatch" \
    --config "$T/mp.yaml" --set "checkpoint.dir=$MP" --set train.max_steps=60 --set checkpoint.every=1000 > "$T/mp-submit.txt" 2>&1) ||
    { cat "$T/mp-submit.txt"; fail "bash slurm/train.sbatch (submit)"; }
cat "$T/mp-submit.txt"
grep -q -- "sbatch --ntasks=2 --cpus-per-task=1 " "$T/mp-submit.txt" || fail "train.sbatch did not ask for 2 CPU ranks"
grep -q -- "--gpus" "$T/mp-submit.txt" && fail "train.sbatch asked for GPUs for a cpu config"
MJ=$(sed -n 's/^Submitted batch job \([0-9]*\).*/\1/p' "$T/mp-submit.txt")
ranks_of() { ps -eo pid=,args= | grep -F "train --config $T/mp.yaml" | grep -v -e grep -e mpirun -e 'train.sbatch' | awk '{print $1}'; }
for _ in $(seq 3000); do
    [ "$(grep -c '"loss"' "$MP/metrics.jsonl" 2>/dev/null)" -ge 2 ] 2>/dev/null && [ "$(ranks_of | wc -l)" = 2 ] && break
    sleep 0.1
done
MR=$(ranks_of)
[ "$(echo "$MR" | wc -w)" = 2 ] || fail "want 2 mpirun ranks of job $MJ, found '$MR'"
kill -STOP $MR
MS=$(grep -c '"loss"' "$MP/metrics.jsonl")
log "scancel $MJ (2 ranks under mpirun, step $MS)"
t_cancel=$(date +%s)
scancel "$MJ"
kill -CONT $MR
for _ in $(seq 120); do [ -z "$(squeue -h -j "$MJ" 2>/dev/null)" ] && break; sleep 0.5; done
t_gone=$(( $(date +%s) - t_cancel ))
log "job $MJ left the queue $t_gone s after scancel"
cat "$T/logs/qalign-train-$MJ.out"
"$Q" ckpt-info "$MP" > "$T/mp-ckpt.txt" 2>&1 || { cat "$T/mp-ckpt.txt"; fail "mpirun + scancel: no valid checkpoint"; }
CS=$(sed -n 's/.*latest -> step_0*\([0-9][0-9]*\)\.h5.*/\1/p' "$T/mp-ckpt.txt")
[ -n "$CS" ] && [ "$CS" -ge "$MS" ] ||
    fail "mpirun + scancel: the latest checkpoint is step '${CS}', want the stop's (step >= $MS)"
grep -q "qalign: cancelled (SIGTERM): the ranks stopped.*latest checkpoint: step_0*${CS}\.h5" "$T/logs/qalign-train-$MJ.out" ||
    fail "mpirun + scancel: no 'cancelled ... latest checkpoint' line in the job log"
[ "$t_gone" -lt 25 ] || fail "mpirun + scancel: the job took $t_gone s to end (the script should not wait for mpirun)"
[ -z "$(ranks_of)" ] || fail "mpirun + scancel: ranks left running: $(ranks_of)"
LEFT=$(ps -eo pid=,stat=,args= | grep -F "mpirun" | grep -F "$T/mp.yaml" | grep -v -e grep -e ' Z')
[ -z "$LEFT" ] || fail "mpirun + scancel: mpirun outlived the job: $LEFT"
[ -e "$MP/adapter" ] && fail "mpirun + scancel: the run finished although it was cancelled"

# ---- the same grid on this machine: byte-identical ----------------------------------------------------
LW=$T/sw-local
log "submit --local"
"$Q" sweep submit "$GRID" "${SETS[@]}" --set "dir=$LW" --local > "$T/local.txt" 2>&1 ||
    { cat "$T/local.txt"; fail "sweep submit --local"; }
n=0
for f in $(cd "$SW" && find cells base -name adapter_model.safetensors -o -name predictions.jsonl | sort); do
    cmp -s "$SW/$f" "$LW/$f" || fail "$f differs between Slurm and --local"
    n=$((n + 1))
done
[ $n = 14 ] || fail "compared $n adapter / prediction files, want 14 (6 adapters, 8 evaluations)"
for f in $(cd "$SW/report" && ls ./*.csv ./*.md); do
    cmp -s "$SW/report/$f" "$LW/report/$f" || fail "report/$f differs between Slurm and --local"
done
for c in $(cd "$SW/cells" && find . -name metrics.jsonl); do
    a=$(python3 -c 'import json, sys; print([json.loads(l)["loss"] for l in open(sys.argv[1]) if "\"loss\"" in l])' "$SW/cells/$c")
    b=$(python3 -c 'import json, sys; print([json.loads(l)["loss"] for l in open(sys.argv[1]) if "\"loss\"" in l])' "$LW/cells/$c")
    [ "$a" = "$b" ] || fail "$c: the losses differ between Slurm and --local"
done
log "compared $n adapter/prediction files, the report tables and the losses of 6 cells"

[ $FAIL = 0 ] && log "slurm_sweep: ok (preempt + requeue + resume, scancel + checkpoint + resubmit, report == results.json, --local == Slurm)"
exit $FAIL
