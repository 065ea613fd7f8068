"""diffusers' `examples/unconditional_image_generation/train_unconditional.py` training loop, re-implemented from
its documented steps for a side-by-side measurement (torchvision does not install beside torch 2.13 here, so its
transforms are written with PIL + numpy, doing the same work per item):

- a `datasets.Dataset` with `set_transform`: per item, Resize(resolution, bilinear) -> CenterCrop -> ToTensor ->
  Normalize([0.5], [0.5]), decoded from the stored image each time it is read;
- `DataLoader(batch_size, shuffle=True, num_workers=0)` prepared by `accelerate`;
- per step: noise ~ N(0, I), t ~ U{0..T-1}, diffusers' `DDPMScheduler.add_noise`, `model(...).sample`,
  `F.mse_loss(output.float(), noise.float())`, `accelerator.backward`, grad-norm clipping at 1.0, AdamW
  (betas 0.95/0.999, weight decay 1e-6), cosine LR with warmup, `EMAModel.step`, and the per-step `loss.item()`
  logging of the script.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def _augment(image: Image.Image, resolution: int) -> torch.Tensor:
    image = image.convert("L")
    w, h = image.size
    scale = resolution / min(w, h)
    image = image.resize((max(resolution, round(w * scale)), max(resolution, round(h * scale))), Image.Resampling.BILINEAR)
    left, top = (image.width - resolution) // 2, (image.height - resolution) // 2
    image = image.crop((left, top, left + resolution, top + resolution))
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)[None]  # ToTensor
    return (x - 0.5) / 0.5  # Normalize([0.5], [0.5])


def train_reference(
    unet, dataset, resolution: int, batch_size: int, steps: int, seed: int = 0, warmup: int = 3, mixed_precision: str = "no"
) -> float:
    """Run `steps` optimizer steps of the reference loop; returns steady-state images/s (after `warmup` steps)."""
    from accelerate import Accelerator
    from diffusers import DDPMScheduler
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel

    torch.manual_seed(seed)
    accelerator = Accelerator(mixed_precision=mixed_precision)
    noise_scheduler = DDPMScheduler(num_train_timesteps=1000)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-4, betas=(0.95, 0.999), weight_decay=1e-6, eps=1e-8)

    def transform(examples):
        return {"input": [_augment(image, resolution) for image in examples["image"]]}

    dataset = dataset.with_transform(transform)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=0, drop_last=True)
    lr_scheduler = get_scheduler("cosine", optimizer=optimizer, num_warmup_steps=500, num_training_steps=steps)
    unet, optimizer, loader, lr_scheduler = accelerator.prepare(unet, optimizer, loader, lr_scheduler)
    ema = EMAModel(
        unet.parameters(),
        decay=0.9999,
        use_ema_warmup=True,
        inv_gamma=1.0,
        power=3 / 4,
        model_cls=type(accelerator.unwrap_model(unet)),
        model_config=accelerator.unwrap_model(unet).config,
    )
    unet.train()
    done, timed, seconds = 0, 0, 0.0
    while done < steps:
        t0 = time.perf_counter()
        for batch in loader:
            clean = batch["input"]
            noise = torch.randn(clean.shape, dtype=clean.dtype, device=clean.device)
            timesteps = torch.randint(
                0, noise_scheduler.config.num_train_timesteps, (clean.shape[0],), device=clean.device
            ).long()
            noisy = noise_scheduler.add_noise(clean, noise, timesteps)
            with accelerator.accumulate(unet):
                output = unet(noisy, timesteps).sample
                loss = F.mse_loss(output.float(), noise.float())
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(unet.parameters(), 1.0)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad()
            if accelerator.sync_gradients:
                ema.step(unet.parameters())
            _ = {"loss": loss.detach().item(), "lr": lr_scheduler.get_last_lr()[0], "ema_decay": ema.cur_decay_value}
            done += 1
            now = time.perf_counter()
            if done > warmup:
                timed, seconds = timed + 1, seconds + now - t0
            t0 = now
            if done >= steps:
                break
    return timed * batch_size / seconds
