"""Write a shareable stream card for a steered stream, then train a small encoder on it for a few steps.

Run: python examples/stream_and_train.py   (writes card.json/.safetensors and stream.json)
"""


import fairgen
import steering
from fairgen.contrastive import TrainConfig, Trainer
from fairgen.world.judges import load_judges

generator = fairgen.load_generator("world-sprites-z128")
steerer, _ = steering.fit_steerer(generator, load_judges()["texture"].predict, n=8000, mode="balance")
card = steering.save_card(steerer, "card", {"generator": {"name": generator.name, "sha256": generator.checksum}})

spec = fairgen.make_spec(generator, eraser=card, views={"kinds": ["anchor", "flip"]}, augment="none", seed=0)
spec.save("stream.json")  # a few kilobytes that reproduce the exact stream below
stream = fairgen.Stream(fairgen.StreamSpec.load("stream.json"), batch_size=64)

trainer = Trainer(TrainConfig(supervised=True, total_steps=20, warmup_steps=2, augment="light"), "cpu")
trainer.fit(stream)
print("trained", trainer.step, "steps; last loss", trainer.history[-1]["loss"] if trainer.history else "n/a")
