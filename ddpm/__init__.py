"""ddpm-space: the Denoising Diffusion Probabilistic Model of Ho et al. (2020), written from the article's equations.

    from ddpm import DDPMScheduler
"""

from .schedules import diagnose, make_betas
from .scheduler import DDPMScheduler, DDPMSchedulerOutput

__all__ = ["DDPMScheduler", "DDPMSchedulerOutput", "diagnose", "make_betas"]
__version__ = "0.1.0"
