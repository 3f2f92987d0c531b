/* fidelity.h - image and latent fidelity metrics for `dfa eval` (the fidelity harness), and the
 * two figures it draws: an SSIM-vs-attention scatter plot and a contact sheet.
 *
 * SSIM (Wang, Bovik, Sheikh, Simoncelli 2004), computed PER RGB CHANNEL on 8-bit values and
 * averaged over the channels:
 *     SSIM(x, y) = (2 mu_x mu_y + C1)(2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2))
 * with local statistics under an 11x11 Gaussian window, sigma 1.5, normalised to sum 1
 * (s_x^2 = E_w[x^2] - mu_x^2, biased, as the paper's reference code), C1 = (0.01 * 255)^2,
 * C2 = (0.03 * 255)^2, and the mean taken over the "valid" window positions only (no padding:
 * (W - 10) x (H - 10) positions). Images smaller than 11 pixels on a side give NaN.
 * PSNR = 10 log10(255^2 / MSE) over every channel value; +inf for identical images. */
#ifndef DFA_EVAL_FIDELITY_H
#define DFA_EVAL_FIDELITY_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

#define DFA_SSIM_WIN 11
#define DFA_SSIM_SIGMA 1.5
#define DFA_SSIM_C1 (0.01 * 255.0 * 0.01 * 255.0)
#define DFA_SSIM_C2 (0.03 * 255.0 * 0.03 * 255.0)

/* Mean SSIM of two interleaved 8-bit images [h, w, channels] (channels 1..4), per channel then
 * averaged. NaN when w or h < 11; DFA_ERR_OOM is reported as NaN too (err set). */
double dfa_ssim_u8(const uint8_t *a, const uint8_t *b, int w, int h, int channels, dfa_error *err);
/* Mean squared error over n 8-bit values. */
double dfa_mse_u8(const uint8_t *a, const uint8_t *b, size_t n);
/* PSNR in dB for a mean squared error over 8-bit values (+inf for mse 0). */
double dfa_psnr_from_mse(double mse);
/* Relative L2 error ||x - ref|| / ||ref|| (float64 sums); ref all zero: 0 if x == ref, else +inf. */
double dfa_rel_l2(const float *ref, const float *x, size_t n);

/* Scatter plot PNG (RGB, 480 x 360): x in [0, 1] (attention FLOPs fraction), y in [ymin, 1]
 * (SSIM), axes with ticks and numeric tick labels, one filled dot per point in a colour of a
 * fixed palette with its index (1-based) drawn beside it, and a hollow reference dot at (1, 1).
 * Non-finite points are skipped. ymin < 1. */
dfa_status dfa_plot_ssim_png(const char *path, const double *x, const double *y, int n, double ymin, dfa_error *err);

/* Contact sheet PNG: rows x cols tiles of w x h RGB images (tiles[r * cols + c]), separated by
 * a 4-pixel grey gutter. */
dfa_status dfa_contact_sheet_png(const char *path, const uint8_t *const *tiles, int rows, int cols, int w, int h,
                                 dfa_error *err);

#endif
