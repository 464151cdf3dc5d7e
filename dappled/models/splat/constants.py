"""Constants of the splat rendering function shared by every backend (no torch: the decoder's
CPU path imports these without loading torch)."""

COV_EPS = 0.1
"""Isotropic dilation (px^2) added to L L^T: keeps Sigma invertible and limits aliasing."""

CUTOFF_M2 = 9.0
"""Squared Mahalanobis radius of the support (3 sigma); w = 0 strictly outside it."""

CUTOFF_SIGMAS = 3.0
"""sqrt(CUTOFF_M2): the axis-aligned half extent of the support is this times sqrt(Sigma_kk)."""

TILE_SIZE = 16
"""Side of the square pixel tiles used for binning."""
