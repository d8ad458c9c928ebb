/* One LSTM time step, forward and backward, fused into a single pass each.
 *
 * abcrnn.cell_kernels compiles this file with the system's C compiler and calls it
 * through ctypes from abcrnn.bf16_lstm, where it replaces about a dozen PyTorch
 * element-wise ops a step (each a separate pass over memory with its own dispatch
 * cost). The matmuls stay in PyTorch. Gates are in PyTorch's order i, f, g, o.
 * Arrays are contiguous and row-major; bf16 values travel as uint16_t bit patterns.
 * The caller checks shapes, dtypes and contiguity.
 */

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* e^x for float x, in a loop the compiler can vectorise (no libm call).
 * x = n ln2 + r with |r| <= ln2 / 2, then e^r by its Taylor series to r^7
 * (truncation below 1e-8 relative) and 2^n by building the exponent bits.
 * Inputs are clamped to [-87, 88] so 2^n stays a normal float; NaN passes through. */
static inline float exp_f32(float x) {
    float clamped = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    float n = __builtin_rintf(clamped * 1.4426950408889634f);
    float r = clamped - n * 0.693145751953125f;
    r = r - n * 1.4286067653301870e-6f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    float result = p * scale;
    return x != x ? x : result;
}

static inline float sigmoid_f32(float x) { return 1.0f / (1.0f + exp_f32(-x)); }

static inline float tanh_f32(float x) { return 2.0f * sigmoid_f32(2.0f * x) - 1.0f; }

static inline float from_bf16(uint16_t value) {
    uint32_t bits = (uint32_t)value << 16;
    float result;
    memcpy(&result, &bits, sizeof result);
    return result;
}

/* Round to the nearest bf16, ties to even, as PyTorch does; NaN stays NaN. */
static inline uint16_t to_bf16(float value) {
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    uint32_t rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
    uint32_t nan = (bits >> 16) | 0x40u;
    return (uint16_t)((bits & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
}

/* The forward step on one row, writing `saved` when with_saved is 1; callers pass a
 * literal so that each version compiles to its own vectorised loop. */
static inline void forward_row(int with_saved, int64_t hidden, const float *restrict x,
                               const uint16_t *restrict p, const float *restrict cp,
                               float *restrict cn, float *restrict h,
                               uint16_t *restrict h_low, float *restrict saved) {
    for (int64_t j = 0; j < hidden; ++j) {
        float i = sigmoid_f32(x[j] + from_bf16(p[j]));
        float f = sigmoid_f32(x[hidden + j] + from_bf16(p[hidden + j]));
        float g = tanh_f32(x[2 * hidden + j] + from_bf16(p[2 * hidden + j]));
        float o = sigmoid_f32(x[3 * hidden + j] + from_bf16(p[3 * hidden + j]));
        float c = f * cp[j] + i * g;
        float tc = tanh_f32(c);
        float out = o * tc;
        cn[j] = c;
        h[j] = out;
        h_low[j] = to_bf16(out);
        if (with_saved) {
            saved[j] = g * i * (1.0f - i);
            saved[hidden + j] = cp[j] * f * (1.0f - f);
            saved[2 * hidden + j] = i * (1.0f - g * g);
            saved[3 * hidden + j] = tc * o * (1.0f - o);
            saved[4 * hidden + j] = o * (1.0f - tc * tc);
            saved[5 * hidden + j] = f;
        }
    }
}

/* Forward step for `batch` rows of `hidden` units.
 *   xproj (B, 4H) fp32: input projection plus both biases. When ids is not NULL,
 *   it is instead a table (V, 4H) whose row ids[b] serves batch row b.
 *   ids (B) int64 in [0, V), or NULL
 *   product (B, 4H) bf16: h_prev @ W_hh.T
 *   c_prev (B, H) fp32 -> c_next, h (fp32) and h_low (bf16), each (B, H)
 *   saved (B, 6H) fp32, or NULL when no backward pass follows: per row the factors
 *   the backward step needs, in blocks of H:
 *     g i (1 - i), c_prev f (1 - f), i (1 - g^2), tanh(c) o (1 - o),
 *     o (1 - tanh(c)^2), f
 */
void lstm_forward_step(int64_t batch, int64_t hidden, const float *xproj,
                       const int64_t *ids, const uint16_t *product, const float *c_prev,
                       float *c_next, float *h, uint16_t *h_low, float *saved) {
    for (int64_t b = 0; b < batch; ++b) {
        const float *x = xproj + (ids ? ids[b] : b) * 4 * hidden;
        const uint16_t *p = product + b * 4 * hidden;
        const float *cp = c_prev + b * hidden;
        if (saved)
            forward_row(1, hidden, x, p, cp, c_next + b * hidden, h + b * hidden,
                        h_low + b * hidden, saved + b * 6 * hidden);
        else
            forward_row(0, hidden, x, p, cp, c_next + b * hidden, h + b * hidden,
                        h_low + b * hidden, NULL);
    }
}

/* The backward step on one row, adding `prod` when with_product is 1, and adding
 * the gate gradients to `grad` instead of writing them when accumulate is 1
 * (literals at each call, as for forward_row). */
static inline void backward_row(int with_product, int accumulate, int64_t hidden,
                                const uint16_t *restrict prod,
                                const float *restrict direct,
                                const float *restrict s, float *restrict dc,
                                float *restrict grad, uint16_t *restrict low) {
    for (int64_t j = 0; j < hidden; ++j) {
        float dh = direct[j];
        if (with_product)
            dh += from_bf16(prod[j]);
        float c = dc[j] + dh * s[4 * hidden + j];
        float gi = c * s[j];
        float gf = c * s[hidden + j];
        float gg = c * s[2 * hidden + j];
        float go = dh * s[3 * hidden + j];
        dc[j] = c * s[5 * hidden + j];
        if (accumulate) {
            grad[j] += gi;
            grad[hidden + j] += gf;
            grad[2 * hidden + j] += gg;
            grad[3 * hidden + j] += go;
        } else {
            grad[j] = gi;
            grad[hidden + j] = gf;
            grad[2 * hidden + j] = gg;
            grad[3 * hidden + j] = go;
        }
        low[j] = to_bf16(gi);
        low[hidden + j] = to_bf16(gf);
        low[2 * hidden + j] = to_bf16(gg);
        low[3 * hidden + j] = to_bf16(go);
    }
}

/* Backward step, from step t + 1 to t.
 *   dh_product (B, H) bf16: dgates(t + 1) @ W_hh, or NULL at the last step
 *   dh_direct (B, H) fp32: the loss gradient reaching h(t) from outside the layer
 *   saved (B, 6H): the forward step's factors
 *   dc (B, H) fp32: gradient of c(t) on entry, of c(t - 1) on return
 *   grad_gates (B, 4H) fp32 and grad_gates_low (B, 4H) bf16: gradients of the
 *   gate pre-activations at step t. When ids is not NULL, grad_gates is instead
 *   the gradient of the forward step's table (V, 4H), and row b's gradients are
 *   added to its row ids[b].
 */
void lstm_backward_step(int64_t batch, int64_t hidden, const uint16_t *dh_product,
                        const float *dh_direct, const float *saved, float *dc,
                        float *grad_gates, uint16_t *grad_gates_low,
                        const int64_t *ids) {
    for (int64_t b = 0; b < batch; ++b) {
        const float *s = saved + b * 6 * hidden;
        const float *direct = dh_direct + b * hidden;
        const uint16_t *prod = dh_product ? dh_product + b * hidden : NULL;
        float *dcb = dc + b * hidden;
        float *grad = grad_gates + (ids ? ids[b] : b) * 4 * hidden;
        uint16_t *low = grad_gates_low + b * 4 * hidden;
        if (prod && ids)
            backward_row(1, 1, hidden, prod, direct, s, dcb, grad, low);
        else if (prod)
            backward_row(1, 0, hidden, prod, direct, s, dcb, grad, low);
        else if (ids)
            backward_row(0, 1, hidden, NULL, direct, s, dcb, grad, low);
        else
            backward_row(0, 0, hidden, NULL, direct, s, dcb, grad, low);
    }
}

/* A 64-bit mixing function (splitmix64's finaliser): consecutive inputs give
 * unrelated, evenly spread outputs, so hash(seed + k) serves as the k-th random
 * number of a stream that any element can compute on its own. */
static inline uint64_t mix64(uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Dropout on n floats: out[k] = x[k] * scale where the top 32 bits of
 * mix64(seed + k) are at least `threshold`, else 0. The same seed gives the same
 * mask, so the backward pass applies it to the gradient by calling this again. */
void dropout_apply(int64_t n, const float *restrict x, float *restrict out,
                   uint64_t seed, uint32_t threshold, float scale) {
    for (int64_t k = 0; k < n; ++k) {
        uint32_t draw = (uint32_t)(mix64(seed + (uint64_t)k) >> 32);
        out[k] = draw >= threshold ? x[k] * scale : 0.0f;
    }
}
