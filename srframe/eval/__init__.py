"""Evaluation: the field's metrics (PSNR, SSIM, LPIPS), the benchmark runner and its reports."""
