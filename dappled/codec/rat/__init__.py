"""The rat codec family: a learned transform codec with region-adaptive transforms
(:mod:`~dappled.codec.rat.codec`; the models are in dappled/models/rat/). Its decoder is a
learned synthesis transform, so unlike splat and field it runs torch."""
