#!/bin/sh
# Runs torch_v32.py with the tuning issue 19 describes for PyTorch 1.13 on this 2-core machine:
# 2 OpenMP threads (ATen) and 2 OpenBLAS threads (Debian's torch calls the system OpenBLAS, pthread variant),
# threads kept on their cores, and jemalloc as the allocator when it is installed (apt-get install libjemalloc2).
# Uses Debian's python3-torch (/usr/bin/python3), not a pyenv interpreter.
here=$(dirname "$0")
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-2}
export OMP_PROC_BIND=${OMP_PROC_BIND:-false}   # binding pins the main thread and OpenBLAS's threads fight it: 1.2 s vs 0.81 s a step
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
jem=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2
if [ -z "${NO_JEMALLOC:-}" ] && [ -f "$jem" ]; then
  export LD_PRELOAD="$jem${LD_PRELOAD:+:$LD_PRELOAD}"
  export MALLOC_CONF=${MALLOC_CONF:-background_thread:true,metadata_thp:auto,dirty_decay_ms:-1,muzzy_decay_ms:-1}
fi
exec /usr/bin/python3 "$here/torch_v32.py" "$@"
