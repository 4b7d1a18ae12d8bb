"""The delivery pipeline's own steps (.github/workflows/): the post-deploy smoke check, the pull-request report."""
