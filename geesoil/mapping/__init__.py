"""Wall-to-wall SOC maps: AOI → pixel grid → tiled covariate reads and predictions → COGs, quicklook and run.json."""
