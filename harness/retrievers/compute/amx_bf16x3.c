/* C = A @ B (+ bias) in "bf16x3" on Intel AMX: float32 in, float32 out, float32 accumulation.
 *
 * Each float32 operand is split into two bfloat16 parts, x = hi + lo with hi = bf16(x) and
 * lo = bf16(x - hi) (round to nearest even), and the product is hi_a*hi_b + hi_a*lo_b + lo_a*hi_b,
 * accumulated in float32 by the AMX tile unit. The dropped lo_a*lo_b term and the rounding of the
 * lo parts leave a relative error of about 2^-16 per product (bf16 alone: 2^-8; float32: 2^-24).
 *
 * B is packed once (harness_amx_pack_b) into 1 KiB tiles of 16 k-pairs x 16 columns (the VNNI layout
 * TDPBF16PS reads), hi and lo parts side by side; A is split block by block inside the call.
 * Shapes: K % 32 == 0 and N % 32 == 0 (the Python side checks); any M.
 * Compiled on first use by harness/retrievers/compute/amx.py; no Python or torch headers.
 */
#include <immintrin.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18
/* Blocks kept in a core's L2 (2 MiB on Sapphire Rapids): up to MC rows of A split into bf16 (A_BYTES), and
 * B_BYTES of packed B columns. Chosen on a 2-core Xeon with MiniLM's and BERT-base's shapes; compare
 * others with `python -m benchmarks.compute.amx_kernel --variant "MC=128 A_BYTES=524288 B_BYTES=524288"`. */
#ifndef MC
#define MC 256
#endif
#ifndef A_BYTES
#define A_BYTES 1048576
#endif
#ifndef B_BYTES
#define B_BYTES 393216
#endif

/* bf16 elements of scratch one thread of harness_amx_gemm needs for inner size K */
int64_t harness_amx_work(int64_t K) { return 2 * MC * K; }

int harness_amx_init(void) { return (int)syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA); }

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tilecfg;

static void configure(void) {
    tilecfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) {
        cfg.rows[t] = 16;
        cfg.colsb[t] = 64;
    }
    _tile_loadconfig(&cfg);
}

static inline uint16_t bf16_bits(float x) { /* round to nearest even, as _mm512_cvtneps_pbh */
    uint32_t u;
    memcpy(&u, &x, 4);
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

static inline float bf16_float(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float x;
    memcpy(&x, &u, 4);
    return x;
}

static void split(float x, uint16_t *hi, uint16_t *lo) {
    *hi = bf16_bits(x);
    *lo = bf16_bits(x - bf16_float(*hi));
}

/* b: [K, N] row-major float32 (the transposed weight). out: (N/16) * (K/32) * 2 tiles of 512 bf16,
 * ordered [n block][k block][hi, lo]. */
void harness_amx_pack_b(const float *b, int64_t K, int64_t N, uint16_t *out) {
    for (int64_t nb = 0; nb < N / 16; nb++)
        for (int64_t kb = 0; kb < K / 32; kb++) {
            uint16_t *hi = out + ((nb * (K / 32) + kb) * 2) * 512, *lo = hi + 512;
            for (int kk = 0; kk < 32; kk++)
                for (int n = 0; n < 16; n++) {
                    int idx = (kk / 2) * 32 + n * 2 + (kk % 2);
                    split(b[(kb * 32 + kk) * N + nb * 16 + n], &hi[idx], &lo[idx]);
                }
        }
}

/* `rows` rows of A (row stride K) into hi/lo bf16 blocks of `block` rows, zero past `rows`. */
static void split_rows(const float *a, int64_t K, int64_t rows, int64_t block, uint16_t *hi, uint16_t *lo) {
    for (int64_t r = 0; r < block; r++) {
        uint16_t *h = hi + r * K, *l = lo + r * K;
        if (r >= rows) {
            memset(h, 0, K * 2);
            memset(l, 0, K * 2);
            continue;
        }
        const float *x = a + r * K;
        for (int64_t k = 0; k < K; k += 16) {
            __m512 v = _mm512_loadu_ps(x + k);
            __m256bh vh = _mm512_cvtneps_pbh(v);
            __m512 back = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32((__m256i)vh), 16));
            __m256bh vl = _mm512_cvtneps_pbh(_mm512_sub_ps(v, back));
            _mm256_storeu_si256((__m256i *)(h + k), (__m256i)vh);
            _mm256_storeu_si256((__m256i *)(l + k), (__m256i)vl);
        }
    }
}

/* 32 x 32 float32 block of A @ B into tmp (row stride 32): A's 32 rows as hi/lo bf16 at ah/al (row stride
 * `lda` elements), B as two packed 16-column blocks b0, b1 of `kblocks` [hi, lo] tile pairs each. */
static inline void block32(const uint16_t *ah, const uint16_t *al, int64_t lda, const uint16_t *b0,
                           const uint16_t *b1, int64_t kblocks, float *tmp) {
    const uint16_t *h0 = ah, *h1 = ah + 16 * lda, *l0 = al, *l1 = al + 16 * lda;
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int64_t kb = 0; kb < kblocks; kb++) {
        const int64_t ko = kb * 32;
        /* lo_a * hi_b */
        _tile_loadd(4, l0 + ko, lda * 2);
        _tile_loadd(5, l1 + ko, lda * 2);
        _tile_loadd(6, b0 + kb * 1024, 64);
        _tile_loadd(7, b1 + kb * 1024, 64);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
        /* hi_a * hi_b */
        _tile_loadd(4, h0 + ko, lda * 2);
        _tile_loadd(5, h1 + ko, lda * 2);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
        /* hi_a * lo_b */
        _tile_loadd(6, b0 + kb * 1024 + 512, 64);
        _tile_loadd(7, b1 + kb * 1024 + 512, 64);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    _tile_stored(0, tmp, 128);
    _tile_stored(1, tmp + 16, 128);
    _tile_stored(2, tmp + 16 * 32, 128);
    _tile_stored(3, tmp + 16 * 32 + 16, 128);
}

/* C[m0:m1, :] = A[m0:m1, :] @ B (+ bias) on the calling thread; work: 2 * MC * K bf16 of scratch. */
static void gemm_rows(const float *a, const uint16_t *packed, const float *bias, float *c, int64_t m0,
                      int64_t m1, int64_t K, int64_t N, uint16_t *work) {
    configure();
    uint16_t *ahi = work, *alo = work + MC * K;
    float tmp[32 * 32] __attribute__((aligned(64)));
    const int64_t kblocks = K / 32;
    int64_t mcap = A_BYTES / (K * 4) / 32 * 32, ncap = B_BYTES / (K * 4) / 32 * 32;
    mcap = mcap < 32 ? 32 : mcap > MC ? MC : mcap;
    ncap = ncap < 32 ? 32 : ncap;
    for (int64_t mc = m0; mc < m1; mc += mcap) {
        int64_t mrows = m1 - mc < mcap ? m1 - mc : mcap;
        split_rows(a + mc * K, K, mrows, (mrows + 31) / 32 * 32, ahi, alo); /* whole 32-row tiles */
        for (int64_t nc = 0; nc < N; nc += ncap) {
            int64_t nend = nc + ncap < N ? nc + ncap : N;
            for (int64_t mi = 0; mi < mrows; mi += 32) {
                for (int64_t n = nc; n < nend; n += 32) {
                    const uint16_t *b0 = packed + (n / 16) * kblocks * 1024;
                    block32(ahi + mi * K, alo + mi * K, K, b0, b0 + kblocks * 1024, kblocks, tmp);
                    int64_t rows = mrows - mi < 32 ? mrows - mi : 32;
                    for (int64_t r = 0; r < rows; r++) {
                        float *dst = c + (mc + mi + r) * N + n;
                        __m512 v0 = _mm512_load_ps(tmp + r * 32), v1 = _mm512_load_ps(tmp + r * 32 + 16);
                        if (bias) {
                            v0 = _mm512_add_ps(v0, _mm512_loadu_ps(bias + n));
                            v1 = _mm512_add_ps(v1, _mm512_loadu_ps(bias + n + 16));
                        }
                        _mm512_storeu_ps(dst, v0);
                        _mm512_storeu_ps(dst + 16, v1);
                    }
                }
            }
        }
    }
    _tile_release();
}

/* C = A @ B (+ bias). a: [M, K] float32, packed: from harness_amx_pack_b, c: [M, N] float32, bias: N
 * floats or NULL, work: threads * 2 * MC * K bf16 of scratch. The rows are split among `threads` OpenMP
 * threads in blocks of 32; loaded into a process that has torch, the OpenMP runtime (libgomp.so.1) is
 * torch's, so these are torch's own intra-op threads and nothing competes with them. */
void harness_amx_gemm(const float *a, const uint16_t *packed, const float *bias, float *c, int64_t M,
                      int64_t K, int64_t N, uint16_t *work, int threads) {
    int64_t blocks = (M + 31) / 32;
    if (threads > blocks) threads = (int)blocks;
    if (threads < 1) threads = 1;
#pragma omp parallel num_threads(threads)
    {
        int t = omp_get_thread_num(), n = omp_get_num_threads();
        int64_t per = (blocks + n - 1) / n, m0 = t * per * 32, m1 = (t + 1) * per * 32;
        if (m1 > M) m1 = M;
        if (m0 < m1) gemm_rows(a, packed, bias, c, m0, m1, K, N, work + (int64_t)t * 2 * MC * K);
    }
}
