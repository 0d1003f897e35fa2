#!/usr/bin/env bash
# Runs a selection's probe jobs as a real Slurm job array on a one-node cluster on
# localhost, and checks the result against the in-process run (docs/guide-cluster.md).
# Not part of the default test run. Needs root (installs Debian's slurm-wlm and munge
# with apt when missing) and the built library (npm run build:ts).
#
#   sudo bash bench/slurm-local.sh [--keep]     # --keep: leave the cluster running
#
# 1. installs slurm-wlm + munge; starts munged, slurmctld and slurmd (proctrack/linuxproc,
#    task/none, no accounting), everything under $BASE;
# 2. saves a recovery set of the bundled model (16 story openings);
# 3. the loop: `hopscotch select --plan DIR --json`; while it answers "planned", submits
#    `sbatch --wait --array=0-(N-1)` of `hopscotch probe --plan DIR` (each task takes
#    its job from SLURM_ARRAY_TASK_ID), then runs select again;
# 4. runs the same selection in one process and compares picks, theta and every score;
# 5. stops its daemons by PID.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BASE=${BASE:-${TMPDIR:-/tmp}/hopscotch-slurm}
KEEP=${1:-}
CONF=$BASE/slurm.conf
NODE=$(command -v node)
CLI="$NODE $ROOT/dist/cli/main.js"
MODEL=$ROOT/models/stories260k
OPTS=(--count 2 --probe-steps 8 --batch-size 8 --rescale-epochs 2 --probing halving --device cpu --threads 1)
mkdir -p "$BASE"/{state,spool,log,out}
alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
say() { echo "[slurm-local $(date -u +%H:%M:%S)] $*"; }

stop_daemons() {
  [ "$KEEP" = --keep ] && { say "cluster left running (SLURM_CONF=$CONF)"; return; }
  for d in slurmd slurmctld munged; do
    f=$BASE/$d.pid
    [ -s "$f" ] || continue
    p=$(cat "$f")
    if kill -0 "$p" 2>/dev/null; then
      kill -TERM "$p"
      for _ in $(seq 20); do kill -0 "$p" 2>/dev/null || break; sleep 0.5; done
      kill -0 "$p" 2>/dev/null && kill -KILL "$p"
      say "$d ($p) stopped"
    fi
    rm -f "$f"
  done
}
trap stop_daemons EXIT

# 1. install and start
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  say "installing slurm-wlm and munge"
  apt-get update -q >/dev/null || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >"$BASE/log/apt-install.log" 2>&1
fi
say "$(slurmctld -V), $(munged -V 2>&1 | head -1)"
if [ ! -s /etc/munge/munge.key ]; then
  mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge:munge /etc/munge/munge.key; chmod 0400 /etc/munge/munge.key
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge; chmod 0755 /run/munge
if ! alive /run/munge/munged.pid; then
  rm -f /run/munge/munged.pid /run/munge/munge.socket.2*
  su -s /bin/sh munge -c /usr/sbin/munged
  for _ in $(seq 20); do alive /run/munge/munged.pid && break; sleep 0.5; done
fi
cp /run/munge/munged.pid "$BASE/munged.pid"
munge -n | unmunge >/dev/null || { echo "munge self-test failed" >&2; exit 1; }

H=$(hostname -s)
HW=$(slurmd -C | head -1 | sed -e 's/^NodeName=[^ ]* //' -e 's/ RealMemory=[0-9]*//')
MEM=$(( $(free -m | awk '/^Mem:/{print $7}') * 9 / 10 ))
cat >"$CONF" <<EOF
ClusterName=hopscotch
SlurmctldHost=$H(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
SlurmctldPidFile=$BASE/slurmctld.pid
SlurmdPidFile=$BASE/slurmd.pid
StateSaveLocation=$BASE/state
SlurmdSpoolDir=$BASE/spool
SlurmctldLogFile=$BASE/log/slurmctld.log
SlurmdLogFile=$BASE/log/slurmd.log
NodeName=$H NodeAddr=127.0.0.1 $HW RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$CONF
alive "$BASE/slurmctld.pid" || { setsid nohup slurmctld -D -f "$CONF" >"$BASE/log/slurmctld.stdout" 2>&1 </dev/null & sleep 2; }
alive "$BASE/slurmd.pid" || { setsid nohup slurmd -D -f "$CONF" >"$BASE/log/slurmd.stdout" 2>&1 </dev/null & }
st=
for _ in $(seq 60); do
  st=$(sinfo -h -N -o %T 2>/dev/null | head -1 || true)
  [ "$st" = idle ] && break; sleep 1
done
[ "$st" = idle ] || { echo "node not idle (state=$st); see $BASE/log" >&2; exit 1; }
sinfo

# 2. the recovery set
WORK=$BASE/work; rm -rf "$WORK"; mkdir -p "$WORK"
"$NODE" --input-type=module -e "
const h = await import('$ROOT/dist/index.js');
const m = await h.load('$MODEL', { device: 'cpu', threads: 1 });
const p = await h.loadPrompts('$ROOT/data/prompts/story-openings.jsonl', { limit: 16 });
const d = await h.recoverySet(m, p, { maxNewTokens: 24, stop: [1, 2], batchSize: 16 });
await h.saveDataset('$WORK/data.jsonl', d, { fingerprint: m.fingerprint });
console.log('data: ' + d.length + ' samples');
m.dispose();"

# 3. the loop, probe jobs as Slurm array tasks
cat >"$WORK/probe.sbatch" <<EOF
#!/bin/bash
#SBATCH --job-name=hopscotch-probe
#SBATCH --cpus-per-task=1
#SBATCH --output=$WORK/probe-%A_%a.out
exec $CLI probe --plan $WORK/plan --device cpu --threads 1
EOF
started=$(date +%s)
arrays=0; tasks=0
while :; do
  state=$($CLI select --model "$MODEL" --data "$WORK/data.jsonl" "${OPTS[@]}" --plan "$WORK/plan" --json 2>>"$WORK/select.log" | tail -1)
  kind=$("$NODE" -e 'console.log(JSON.parse(process.argv[1]).state)' "$state")
  [ "$kind" = done ] && { echo "$state" >"$WORK/plan-selection.json"; break; }
  n=$("$NODE" -e 'const s=JSON.parse(process.argv[1]); console.log(s.jobs)' "$state")
  step=$("$NODE" -e 'console.log(JSON.parse(process.argv[1]).step)' "$state")
  out=$(sbatch --parsable --wait --array=0-$((n - 1)) "$WORK/probe.sbatch")
  arrays=$((arrays + 1)); tasks=$((tasks + n))
  say "step $step: sbatch --array=0-$((n - 1)) -> job $out finished"
done
say "plan loop done: $arrays job arrays, $tasks array tasks, $(( $(date +%s) - started )) s"

# 4. the same selection in one process
$CLI select --model "$MODEL" --data "$WORK/data.jsonl" "${OPTS[@]}" --json 2>/dev/null | tail -1 >"$WORK/inprocess-selection.json"
"$NODE" -e '
const fs = require("fs");
const a = JSON.parse(fs.readFileSync(process.argv[1], "utf8")), b = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const pick = (s) => JSON.stringify({ skipped: s.skipped, theta: s.theta, trace: s.trace, losses: s.losses, probeTokens: s.probeTokens });
console.log("slurm plan:  skipped " + a.skipped.join(",") + ", probe tokens " + a.probeTokens);
console.log("in-process:  skipped " + b.skipped.join(",") + ", probe tokens " + b.probeTokens);
if (pick(a) !== pick(b)) { console.log("MISMATCH"); process.exit(1); }
console.log("identical: picks, theta, every probe score, rescale losses (bit for bit)");
' "$WORK/plan-selection.json" "$WORK/inprocess-selection.json"
say "task outputs: $(ls "$WORK"/probe-*.out | wc -l) files; first: $(head -c 300 "$(ls "$WORK"/probe-*.out | head -1)")"
