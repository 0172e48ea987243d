"""Write a shareable stream card for a steered stream, then train a small encoder on it.

Run: python examples/stream_and_train.py   (writes card.json/.safetensors, stream.json and run/)
The same training from the shell: fairgen train --spec stream.json --steps 80 --batch-size 64
--warmup-steps 5

The two views of a sample are it and its counterfactual twin (texture flipped), so SimCLR's
positives
teach the encoder to ignore texture. SimCLR can reach a loss near 0; SupCon with 4 classes could not
go below ln(63) = 4.14 here, 0.7 below chance, which makes progress hard to read.
"""

import math

import fairgen
import steering
from fairgen.contrastive import TrainConfig, Trainer
from fairgen.world.judges import load_judges

generator = fairgen.load_generator("world-sprites-z128")
steerer, _ = steering.fit_steerer(
    generator, load_judges()["texture"].predict, n=8000, mode="balance"
)
card = steering.save_card(
    steerer, "card", {"generator": {"name": generator.name, "sha256": generator.checksum}}
)

spec = fairgen.make_spec(
    generator, eraser=card, views={"kinds": ["anchor", "flip"]}, augment="none", seed=0
)
spec.save("stream.json")  # a few kilobytes that reproduce the exact stream below
batch_size = 64
stream = fairgen.Stream.from_spec("stream.json", batch_size=batch_size)

# AdamW at 2e-3 (the defaults), SimCLR; metrics go to run/metrics.jsonl
config = TrainConfig(
    total_steps=80, warmup_steps=5, augment="light", log_every=5, checkpoint_dir="run"
)
trainer = Trainer(config, "cpu").fit(stream)
losses = [record["loss"] for record in trainer.history]
chance = math.log(2 * batch_size - 1)  # what an encoder that tells nothing apart scores
print(
    f"trained {trainer.step} steps; loss {losses[0]:.3f} at step 5 -> {losses[-1]:.3f} at step "
    f"{trainer.step} "
    f"(chance ln(2B-1) = {chance:.3f})"
)
