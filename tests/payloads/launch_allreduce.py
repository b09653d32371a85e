"""A script written for torchrun: env:// rendezvous, gloo all_reduce, one JSON line per rank."""

import json
import os
import sys

import torch
import torch.distributed as dist

dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
value = torch.tensor([float(rank + 1)])
dist.all_reduce(value)
keys = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "SLURM_NODEID")
record = {k: os.environ.get(k) for k in keys}
record.update(sum=value.item(), argv=sys.argv[1:])
print(json.dumps(record), flush=True)
dist.destroy_process_group()
