"""ddpm-space: the Denoising Diffusion Probabilistic Model of Ho et al. (2020), written from the article's equations.

from ddpm import DDPMScheduler
"""

from .scheduler import DDPMScheduler, DDPMSchedulerOutput
from .schedules import diagnose, make_betas

__all__ = ["DDPMScheduler", "DDPMSchedulerOutput", "diagnose", "make_betas"]
__version__ = "0.1.0"
