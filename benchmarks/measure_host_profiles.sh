#!/usr/bin/env bash
# Measure and validate this machine's CPU profiles (needs a quiet CPU; ~10 min in all on 2 cores).
#   bash benchmarks/measure_host_profiles.sh [THREADS]
# Kernel grid, then 100 calibration subnets and 100 validation subnets timed end to end in
# 3 interleaved rounds each (the committed profiles: 1 thread, the exported models' setting).
# Writes hardware_profiles/host-cpu-{torch,onnxruntime}.yaml and
# benchmarks/results/hardware_{measure,validate}_host-cpu-*.json
set -euo pipefail
cd "$(dirname "$0")/.."
threads="${1:-1}"
mkdir -p benchmarks/results
for runtime in torch onnxruntime; do
  name="host-cpu-${runtime}"
  start=$(date +%s)
  bertnas profile measure --runtime "$runtime" --name "$name" --threads "$threads" --calibration 100 --rounds 3 --force
  end=$(date +%s)
  python - "$name" "$((end - start))" <<'PY'
import json, sys
from bertnas.hardware import load_profile
name, seconds = sys.argv[1], int(sys.argv[2])
p = load_profile(name)
out = {"device": name, "measure_wall_seconds": seconds, **p.evidence, "corrections": p.corrections.to_yaml()}
open(f"benchmarks/results/hardware_measure_{name}.json", "w").write(json.dumps(out, indent=1) + "\n")
print(json.dumps(out))
PY
  bertnas profile validate --device "$name" --samples 100 --rounds 3 --json \
    --out "benchmarks/results/hardware_validate_${name}.json"
done
