"""Two gloo ranks with the gathering loss get exactly the gradient of one process on the whole
batch."""

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from einops import rearrange
from torch import nn

from fairgen.contrastive import all_gather_with_grad, rank_and_world_size, supcon_loss

WORLD, B, V = 2, 3, 2


def make_encoder() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 16), nn.ReLU(), nn.Linear(16, 8))


def make_batch():
    g = torch.Generator().manual_seed(1)
    return torch.rand(WORLD * B, V, 3, 4, 4, generator=g), torch.randint(
        0, 3, (WORLD * B,), generator=g
    )


def encoder_grads(encoder, views, labels, gather):
    b = views.shape[0]
    z = rearrange(encoder(rearrange(views, "b v c h w -> (b v) c h w")), "(b v) d -> b v d", b=b)
    supcon_loss(z, labels, temperature=0.2, gather=gather).backward()
    return [p.grad for p in encoder.parameters()]


def _worker(rank: int, store: str, out_dir: str):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    try:
        views, labels = make_batch()
        mine = slice(rank * B, (rank + 1) * B)
        for mode, local_labels in (("simclr", None), ("supcon", labels[mine])):
            encoder = nn.parallel.DistributedDataParallel(
                make_encoder()
            )  # averages grads, as in training
            grads = encoder_grads(encoder, views[mine], local_labels, gather=True)
            torch.save([g.clone() for g in grads], f"{out_dir}/{mode}_{rank}.pt")
        dist.barrier()  # neither rank tears gloo down while the other still talks to it
    finally:
        dist.destroy_process_group()


def test_rank_and_world_size_without_a_process_group():
    assert rank_and_world_size() == (0, 1)
    x = torch.randn(3, 2)
    assert all_gather_with_grad(x) is x


def test_two_gloo_ranks_match_one_process_on_the_concatenated_batch(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=WORLD, join=True)
    views, labels = make_batch()
    for mode, all_labels in (("simclr", None), ("supcon", labels)):
        expected = encoder_grads(make_encoder(), views, all_labels, gather=False)
        for rank in range(WORLD):
            got = torch.load(tmp_path / f"{mode}_{rank}.pt", weights_only=True)
            for g, e in zip(got, expected, strict=True):
                assert torch.allclose(g, e, rtol=1e-4, atol=1e-6), f"{mode}, rank {rank}"
