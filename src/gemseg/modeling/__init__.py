"""GEM network: backbones, pixel decoder, deformable attention, query proposal, decoder, checkpoints."""
