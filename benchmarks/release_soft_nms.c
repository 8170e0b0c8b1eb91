/* Gaussian soft-NMS of one class's segments, in the order of operations of the
 * ActionFormer release's compiled CPU kernel, for benchmarks/release_actionformer.py.
 *
 * Step i moves the highest remaining score to row i (first maximum on ties), then
 * multiplies every later row's score by exp(-iou^2 / sigma) and removes a row whose
 * score falls below min_score by moving the last row into its place.
 * All arrays have n rows and are rearranged in place; length[j] = x2[j] - x1[j] + 1e-6.
 * Returns the number of rows kept (rows 0 .. kept - 1, in the order taken).
 */
#include <math.h>
#include <stdint.h>

static void move_row(float *x1, float *x2, float *score, float *length, int64_t *index,
                     int64_t to, int64_t from)
{
    x1[to] = x1[from];
    x2[to] = x2[from];
    score[to] = score[from];
    length[to] = length[from];
    index[to] = index[from];
}

static void swap_rows(float *x1, float *x2, float *score, float *length, int64_t *index,
                      int64_t a, int64_t b)
{
    float f;
    int64_t k;
    f = x1[a]; x1[a] = x1[b]; x1[b] = f;
    f = x2[a]; x2[a] = x2[b]; x2[b] = f;
    f = score[a]; score[a] = score[b]; score[b] = f;
    f = length[a]; length[a] = length[b]; length[b] = f;
    k = index[a]; index[a] = index[b]; index[b] = k;
}

int64_t release_soft_nms(float *x1, float *x2, float *score, float *length, int64_t *index,
                         int64_t n, float sigma, float min_score)
{
    for (int64_t i = 0; i < n; i++) {
        int64_t best = i;
        for (int64_t j = i + 1; j < n; j++)
            if (score[best] < score[j])
                best = j;
        swap_rows(x1, x2, score, length, index, i, best);

        int64_t j = i + 1;
        while (j < n) {
            float left = x1[i] > x1[j] ? x1[i] : x1[j];
            float right = x2[i] < x2[j] ? x2[i] : x2[j];
            float inter = right - left > 0.f ? right - left : 0.f;
            float iou = inter / (length[i] + length[j] - inter);
            score[j] *= expf(-(iou * iou) / sigma);
            if (score[j] < min_score) {
                move_row(x1, x2, score, length, index, j, n - 1);
                n--;  /* row j now holds the former last row: look at it again */
            } else {
                j++;
            }
        }
    }
    return n;
}
