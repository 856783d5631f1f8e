// Weight-only int8 / int4 / bf16 matrix products for AVX2 + FMA + F16C CPUs (the q8_0 / q4_0 idea of llama.cpp,
// written for this project's layouts). Built as a plain shared library and called through ctypes
// (qwen35/model/kernels/build.py); every entry point has a pure-torch twin in qwen35/model/kernels/quant.py.
//
// Layouts (row-major, K a multiple of 32, groups of 32 along K):
//   activations  x  float32 [M, K]  -> quantised once per call: xq int8 [M, K], xd float32 [M, K/32]
//                                      (d = max|x| / 127, q = round-half-even(x * (1/d))), and for int4 weights
//                                      x8 int16 [M, K/32, 16] = pairwise sums 8*(q[2i] + q[2i+1])
//   int8 weight  wq int8 [N, K] in -127..127, wd float16 [N, K/32]; w = wq * wd
//   int4 weight  wq uint8 [N, K/2]: group g, byte j holds element j (low nibble) and j+16 (high nibble);
//                wd float16 [N, K/32]; w = (nibble - 8) * wd
//   bf16 weight  w uint16 [N, K]
//   output       out float32 [M, N]
// The integer dot product of each 32-group is exact; only the float sum over groups may round differently from
// the twin. Threads: the products and the GDN step share out blocks of output rows through the small pool below
// (no barrier waits for a preempted thread); load-time helpers use OpenMP (torch's libgomp, so one runtime).
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

namespace {

// ---- Work-sharing pool for the hot kernels. Unlike an OpenMP region, the caller never waits at a barrier for a
// thread that has not started: items are handed out in blocks from an atomic counter, the caller takes blocks too,
// and it waits only for blocks already taken. On a machine shared with other processes a preempted worker then
// costs at most its one block (measured under load: OpenMP regions took 10x their work waiting for a thread).
struct PoolJob {
    const std::function<void(int64_t, int64_t)>* fn;
    int64_t n, grain;
    std::atomic<int64_t> next{0}, done{0};
};

class Pool {
public:
    void run(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
        if (n <= 0) return;
        ensure_workers();
        if (workers_.empty() || n <= grain) {
            fn(0, n);
            return;
        }
        auto job = std::make_shared<PoolJob>();
        job->fn = &fn;
        job->n = n;
        job->grain = grain;
        {
            std::lock_guard<std::mutex> lock(mu_);
            current_ = job;
            generation_.fetch_add(1, std::memory_order_release);
        }
        cv_.notify_all();
        work(*job);
        while (job->done.load(std::memory_order_acquire) < n) _mm_pause();
    }

    void set_threads(int threads) { wanted_ = threads < 1 ? 1 : threads; }

private:
    static void work(PoolJob& job) {
        for (;;) {
            const int64_t start = job.next.fetch_add(job.grain, std::memory_order_acq_rel);
            if (start >= job.n) return;
            const int64_t end = std::min(start + job.grain, job.n);
            (*job.fn)(start, end);
            job.done.fetch_add(end - start, std::memory_order_acq_rel);
        }
    }

    void ensure_workers() {
        if (started_) return;
        std::lock_guard<std::mutex> lock(start_mu_);
        if (started_) return;
        int threads = wanted_ > 0 ? wanted_ : static_cast<int>(std::thread::hardware_concurrency());
        for (int i = 1; i < threads; ++i) {
            workers_.emplace_back([this] { loop(); });
            workers_.back().detach();
        }
        started_ = true;
    }

    void loop() {
        uint64_t seen = 0;
        for (;;) {
            int spins = 0;
            while (generation_.load(std::memory_order_acquire) == seen) {
                if (++spins < 4000) {
                    _mm_pause();
                    continue;
                }
                std::unique_lock<std::mutex> lock(mu_);
                cv_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
            }
            std::shared_ptr<PoolJob> job;
            {
                std::lock_guard<std::mutex> lock(mu_);
                job = current_;
                seen = generation_.load(std::memory_order_acquire);
            }
            if (job) work(*job);  // a stale job is exhausted: the loop exits at once
        }
    }

    std::mutex mu_, start_mu_;
    std::condition_variable cv_;
    std::atomic<uint64_t> generation_{0};
    std::shared_ptr<PoolJob> current_;
    std::vector<std::thread> workers_;
    std::atomic<bool> started_{false};
    int wanted_ = 0;
};

Pool& pool() {
    static Pool* instance = new Pool();  // never destroyed: detached workers may outlive static destruction
    return *instance;
}

constexpr int64_t kGroup = 32;
constexpr int64_t kPrefetch = 2048;  // bytes ahead in a streamed weight tile (software prefetch)

// The rest of `for_blocks`: f(std::integral_constant<int, rest>{}, m0) for a rest of 1..B.
template <int B, typename F>
inline void rest_block(int64_t rest, int64_t m0, F& f) {
    if constexpr (B > 0) {
        if (rest == B)
            f(std::integral_constant<int, B>{}, m0);
        else
            rest_block<B - 1>(rest, m0, f);
    }
}

// f(std::integral_constant<int, MC>{}, m0) over [0, n): blocks of Max, then one block of the rest. The kernels take
// the block's size as a template parameter (their accumulators unroll over it): activation rows in blocks of 8,
// the query heads of a decode attention item in blocks of 4.
template <int Max, typename F>
inline void for_blocks(int64_t n, F&& f) {
    int64_t m0 = 0;
    for (; m0 + Max <= n; m0 += Max) f(std::integral_constant<int, Max>{}, m0);
    rest_block<Max - 1>(n - m0, m0, f);
}

inline float hsum(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v);
    __m128 hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    __m128 shuf = _mm_movehdup_ps(lo);
    __m128 sums = _mm_add_ps(lo, shuf);
    shuf = _mm_movehl_ps(shuf, sums);
    sums = _mm_add_ss(sums, shuf);
    return _mm_cvtss_f32(sums);
}

inline float half_to_float(uint16_t h) { return _cvtsh_ss(h); }

// x*y summed in int32 lanes for signed int8 x, y (|x| <= 127): the sign trick of maddubs.
inline __m256i dot_i8(__m256i w, __m256i x) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i ax = _mm256_sign_epi8(x, x);
    __m256i sw = _mm256_sign_epi8(w, x);
    return _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sw), ones);
}

inline __m256i unpack_q4(const uint8_t* p) {
    __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    __m256i both = _mm256_set_m128i(_mm_srli_epi16(raw, 4), raw);
    return _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
}

// (nibble - 8) . x as int32 lanes: maddubs(nibble, x) - 8 * pair sums of x (precomputed in x8), both exact.
inline __m256i dot_q4(const uint8_t* w, __m256i x, const int16_t* x8) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i d16 = _mm256_maddubs_epi16(unpack_q4(w), x);
    d16 = _mm256_sub_epi16(d16, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x8)));
    return _mm256_madd_epi16(d16, ones);
}

inline __m256i load32(const int8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }

template <int MC>
void q8_rows(const int8_t* xq, const float* xd, int64_t m0, int64_t K, const int8_t* wrow, const uint16_t* drow,
             int64_t N, int64_t n, float* out) {
    const int64_t nb = K / kGroup;
    __m256 acc[MC];
    for (int j = 0; j < MC; ++j) acc[j] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
        __m256i w = load32(wrow + b * kGroup);
        float dw = half_to_float(drow[b]);
        for (int j = 0; j < MC; ++j) {
            const int64_t m = m0 + j;
            __m256i x = load32(xq + m * K + b * kGroup);
            __m256 s = _mm256_set1_ps(dw * xd[m * nb + b]);
            acc[j] = _mm256_fmadd_ps(s, _mm256_cvtepi32_ps(dot_i8(w, x)), acc[j]);
        }
    }
    for (int j = 0; j < MC; ++j) out[(m0 + j) * N + n] = hsum(acc[j]);
}

template <int MC>
void q4_rows(const int8_t* xq, const float* xd, const int16_t* x8, int64_t m0, int64_t K, const uint8_t* wrow,
             const uint16_t* drow, int64_t N, int64_t n, float* out) {
    const int64_t nb = K / kGroup;
    __m256 acc[MC];
    for (int j = 0; j < MC; ++j) acc[j] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
        const uint8_t* w = wrow + b * (kGroup / 2);
        float dw = half_to_float(drow[b]);
        if (MC > 1) {
            // Unpack once, reuse for every activation row of the tile.
            const __m256i ones = _mm256_set1_epi16(1);
            __m256i wu = unpack_q4(w);
            for (int j = 0; j < MC; ++j) {
                const int64_t m = m0 + j;
                __m256i x = load32(xq + m * K + b * kGroup);
                __m256i d16 = _mm256_maddubs_epi16(wu, x);
                d16 = _mm256_sub_epi16(
                    d16, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x8 + (m * nb + b) * 16)));
                __m256 s = _mm256_set1_ps(dw * xd[m * nb + b]);
                acc[j] = _mm256_fmadd_ps(s, _mm256_cvtepi32_ps(_mm256_madd_epi16(d16, ones)), acc[j]);
            }
        } else {
            const int64_t m = m0;
            __m256i x = load32(xq + m * K + b * kGroup);
            __m256 s = _mm256_set1_ps(dw * xd[m * nb + b]);
            acc[0] = _mm256_fmadd_ps(s, _mm256_cvtepi32_ps(dot_q4(w, x, x8 + (m * nb + b) * 16)), acc[0]);
        }
    }
    for (int j = 0; j < MC; ++j) out[(m0 + j) * N + n] = hsum(acc[j]);
}

// ---- AVX512-VNNI (+VL) variant, picked at run time where the CPU has it: one vpdpbusd per 32-group replaces the
// maddubs / madd pair. Weights enter as unsigned bytes (int8: w + 128 by an xor; int4: the nibble itself), so the
// activation's correction -offset * (sum of each 4 bytes) is precomputed per group (xc, int32 [M, K/32, 8]) and is
// the accumulator's starting value: the group's integer dot product stays exact.
#define QWEN35_VNNI __attribute__((target("avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni")))

template <int MC, bool Q4>
QWEN35_VNNI void vnni_rows(const int8_t* xq, const float* xd, const int32_t* xc, int64_t m0, int64_t K,
                           const uint8_t* wrow, const uint16_t* drow, int64_t N, int64_t n, float* out) {
    const int64_t nb = K / kGroup;
    constexpr int U = MC == 1 ? 2 : 1;  // a lone row gets two accumulator chains (FMA latency)
    __m256 acc[MC * U];
    for (int j = 0; j < MC * U; ++j) acc[j] = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + U <= nb; b += U) {
        for (int u = 0; u < U; ++u) {
            const int64_t g = b + u;
            __m256i wu;
            if (Q4) {
                wu = unpack_q4(wrow + g * (kGroup / 2));
            } else {
                wu = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(wrow + g * kGroup)),
                                      _mm256_set1_epi8(static_cast<char>(0x80)));
            }
            const float dw = half_to_float(drow[g]);
            for (int j = 0; j < MC; ++j) {
                const int64_t m = m0 + j;
                __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + m * K + g * kGroup));
                __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xc + (m * nb + g) * 8));
                __m256i d = _mm256_dpbusd_epi32(c, wu, x);
                acc[j * U + u] = _mm256_fmadd_ps(_mm256_set1_ps(dw * xd[m * nb + g]), _mm256_cvtepi32_ps(d),
                                                 acc[j * U + u]);
            }
        }
    }
    for (; b < nb; ++b) {  // odd group count with U == 2
        __m256i wu = Q4 ? unpack_q4(wrow + b * (kGroup / 2))
                        : _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(wrow + b * kGroup)),
                                           _mm256_set1_epi8(static_cast<char>(0x80)));
        const float dw = half_to_float(drow[b]);
        for (int j = 0; j < MC; ++j) {
            const int64_t m = m0 + j;
            __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + m * K + b * kGroup));
            __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xc + (m * nb + b) * 8));
            __m256i d = _mm256_dpbusd_epi32(c, wu, x);
            acc[j * U] = _mm256_fmadd_ps(_mm256_set1_ps(dw * xd[m * nb + b]), _mm256_cvtepi32_ps(d), acc[j * U]);
        }
    }
    for (int j = 0; j < MC; ++j) {
        __m256 a = acc[j * U];
        if (U == 2) a = _mm256_add_ps(a, acc[j * U + 1]);
        out[(m0 + j) * N + n] = hsum(a);
    }
}

template <bool Q4>
QWEN35_VNNI void vnni_gemm(const int8_t* xq, const float* xd, const int32_t* xc, int64_t M, int64_t K,
                           const uint8_t* wq, const uint16_t* wd, int64_t N, float* out);

// acc + w . (4 bytes at p, broadcast): the broadcast rides in vpdpbusd's memory operand ({1to16}), one
// instruction where the intrinsics give two (GCC 12 does not fold it).
QWEN35_VNNI inline __m512i dpbusd_bcast(__m512i acc, __m512i w, const int8_t* p) {
    __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(w), "m"(*reinterpret_cast<const int32_t*>(p)));
    return acc;
}

// The activation rows of one tiled product regrouped group-major, so a kernel reaches row j of group g at a fixed
// offset from one pointer: q int8 [G][M][32], corr int32 [G][M] = -offset * (sum of the group's 32 values, the
// unsigned-weight correction), scale float [G][M]. Built by the calling thread, read by every worker.
struct GroupMajor {
    const int8_t* q;
    const int32_t* corr;
    const float* scale;
    int64_t M, G;
};

inline GroupMajor group_major(const int8_t* xq, const float* xd, const int32_t* xs, int64_t M, int64_t K,
                              int32_t offset) {
    const int64_t G = K / kGroup;
    thread_local std::vector<int8_t> q;
    thread_local std::vector<int32_t> corr;
    thread_local std::vector<float> scale;
    q.resize(static_cast<size_t>(M * K));
    corr.resize(static_cast<size_t>(M * G));
    scale.resize(static_cast<size_t>(M * G));
    for (int64_t g = 0; g < G; ++g) {
        for (int64_t m = 0; m < M; ++m) {
            memcpy(q.data() + (g * M + m) * kGroup, xq + m * K + g * kGroup, kGroup);
            corr[g * M + m] = -offset * xs[m * G + g];
            scale[g * M + m] = xd[m * G + g];
        }
    }
    return {q.data(), corr.data(), scale.data(), M, G};
}

// ---- Interleaved 8-row tiles (VNNI): lane l of every vector is output row 8t + l, so one vpdpbusd does 4 MACs for
// each of 8 rows with one broadcast 4-byte chunk of the activation, the group's scales are one vector, and no
// horizontal sum is needed. Tile layout (N % 8 == 0), per tile t and group g:
//   int8: 256 bytes [chunk c = 0..7][row l = 0..7][4 bytes: elements 4c..4c+3 of row 8t + l]
//   int4: 128 bytes [i = 0..3][row l][4 bytes j: low nibble = element 4i + j, high nibble = element 16 + 4i + j]
//   scales: float16 [tile][group][8 rows]
// The activation's correction is per group (xs = sum of its 32 quantised values): -offset * xs starts the
// accumulator, so the integer dot product stays exact.
template <int MC, bool Q4>
QWEN35_VNNI void tile_rows(const GroupMajor& x, int64_t m0, const uint8_t* wtile, const uint16_t* stile, int64_t N,
                           int64_t n0, float* out) {
    const int64_t G = x.G, M = x.M;
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
    __m256 acc[MC];
    for (int j = 0; j < MC; ++j) acc[j] = _mm256_setzero_ps();
    for (int64_t g = 0; g < G; ++g) {
        const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(stile + g * 8)));
        __m256i w[8];
        const uint8_t* ahead = wtile + g * (Q4 ? 128 : 256) + kPrefetch;
        for (int64_t b = 0; b < (Q4 ? 128 : 256); b += 64)
            _mm_prefetch(reinterpret_cast<const char*>(ahead + b), _MM_HINT_T0);
        if (Q4) {
            const uint8_t* p = wtile + g * 128;
            for (int i = 0; i < 4; ++i) {
                __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i * 32));
                w[i] = _mm256_and_si256(raw, low4);
                w[i + 4] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low4);
            }
        } else {
            const uint8_t* p = wtile + g * 256;
            for (int c = 0; c < 8; ++c)
                w[c] = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + c * 32)), flip);
        }
        // One accumulator chain per activation row (MC independent chains hide vpdpbusd's latency); chunk c of
        // every row meets w[c] (int4: w[i] holds elements 4i.., w[i + 4] elements 16 + 4i..: the same pairing).
        constexpr int kChains = MC <= 2 ? 2 : 1;  // two chains when too few rows hide the latency
        __m256i dot[kChains][MC];
        const int8_t* xg = x.q + (g * M + m0) * kGroup;  // rows m0.. of group g, 32 bytes each
        const int32_t* cg = x.corr + g * M + m0;
        const float* dg = x.scale + g * M + m0;
        for (int j = 0; j < MC; ++j) {
            dot[0][j] = _mm256_set1_epi32(cg[j]);
            if (kChains == 2) dot[kChains - 1][j] = _mm256_setzero_si256();
        }
        for (int c = 0; c < 8; ++c) {
            for (int j = 0; j < MC; ++j) {
                int32_t chunk;
                memcpy(&chunk, xg + j * kGroup + 4 * c, 4);
                dot[c % kChains][j] = _mm256_dpbusd_epi32(dot[c % kChains][j], w[c], _mm256_set1_epi32(chunk));
            }
        }
        for (int j = 0; j < MC; ++j) {
            const __m256i sum = kChains == 2 ? _mm256_add_epi32(dot[0][j], dot[kChains - 1][j]) : dot[0][j];
            const __m256 scale = _mm256_mul_ps(dw, _mm256_set1_ps(dg[j]));
            acc[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), scale, acc[j]);
        }
    }
    for (int j = 0; j < MC; ++j) _mm256_storeu_ps(out + (m0 + j) * N + n0, acc[j]);
}

// Two adjacent tiles (output rows 8t .. 8t + 15) in 512-bit vectors: lane l < 8 is row 8t + l of tile t, lane
// 8 + l row l of tile t + 1. One broadcast chunk of an activation row then feeds 16 rows in one vpdpbusd, half the
// instructions per multiply of `tile_rows` (whose loop is bound by issuing them, not by the multiplies).
template <int MC, bool Q4>
QWEN35_VNNI void tile_pair_rows(const GroupMajor& x, int64_t m0, const uint8_t* wtile, int64_t tile_bytes,
                                const uint16_t* stile, int64_t N, int64_t n0, float* out) {
    const int64_t G = x.G, M = x.M;
    const __m512i low4 = _mm512_set1_epi8(0x0F);
    const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
    const uint8_t* wnext = wtile + tile_bytes;
    const uint16_t* snext = stile + G * 8;
    __m512 acc[MC];
    for (int j = 0; j < MC; ++j) acc[j] = _mm512_setzero_ps();
    for (int64_t g = 0; g < G; ++g) {
        const __m256i halves = _mm256_inserti128_si256(
            _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(stile + g * 8))),
            _mm_loadu_si128(reinterpret_cast<const __m128i*>(snext + g * 8)), 1);
        const __m512 dw = _mm512_cvtph_ps(halves);
        __m512i w[8];
        const int64_t step = Q4 ? 128 : 256;
        const uint8_t* p = wtile + g * step;
        const uint8_t* q = wnext + g * step;
        for (int64_t ahead = 0; ahead < step; ahead += 64) {  // the hardware prefetcher alone falls behind here
            _mm_prefetch(reinterpret_cast<const char*>(p + kPrefetch + ahead), _MM_HINT_T0);
            _mm_prefetch(reinterpret_cast<const char*>(q + kPrefetch + ahead), _MM_HINT_T0);
        }
        for (int i = 0; i < (Q4 ? 4 : 8); ++i) {
            const __m512i raw = _mm512_inserti64x4(
                _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i * 32))),
                _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + i * 32)), 1);
            if (Q4) {
                w[i] = _mm512_and_si512(raw, low4);
                w[i + 4] = _mm512_and_si512(_mm512_srli_epi16(raw, 4), low4);
            } else {
                w[i] = _mm512_xor_si512(raw, flip);
            }
        }
        // One accumulator chain per activation row, two when there are too few rows to hide the latency.
        constexpr int kChains = MC <= 2 ? 2 : 1;
        __m512i dot[kChains][MC];
        const int8_t* xg = x.q + (g * M + m0) * kGroup;  // rows m0.. of group g, 32 bytes each
        const int32_t* cg = x.corr + g * M + m0;
        const float* dg = x.scale + g * M + m0;
        for (int j = 0; j < MC; ++j) {
            dot[0][j] = _mm512_set1_epi32(cg[j]);
            if (kChains == 2) dot[kChains - 1][j] = _mm512_setzero_si512();
        }
        for (int c = 0; c < 8; ++c) {
            for (int j = 0; j < MC; ++j) {
                dot[c % kChains][j] = dpbusd_bcast(dot[c % kChains][j], w[c], xg + j * kGroup + 4 * c);
            }
        }
        for (int j = 0; j < MC; ++j) {
            const __m512i sum = kChains == 2 ? _mm512_add_epi32(dot[0][j], dot[kChains - 1][j]) : dot[0][j];
            const __m512 scale = _mm512_mul_ps(dw, _mm512_set1_ps(dg[j]));
            acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), scale, acc[j]);
        }
    }
    for (int j = 0; j < MC; ++j) _mm512_storeu_ps(out + (m0 + j) * N + n0, acc[j]);
}

template <bool Q4>
QWEN35_VNNI void tiled_gemm(const int8_t* xq, const float* xd, const int32_t* xs, int64_t M, int64_t K,
                            const uint8_t* wq, const uint16_t* wd, int64_t N, float* out) {
    const int64_t G = K / kGroup;
    const int64_t tile_bytes = Q4 ? 4 * K : 8 * K;
    const int64_t tiles = N / 8;
    const GroupMajor x = group_major(xq, xd, xs, M, K, Q4 ? 8 : 128);
    // Work items are pairs of tiles (the last one alone when the count is odd). A single row (batch-1 decode) is
    // pure streaming: eight blocks per call keep each thread on one long run of the weight (the 4B's projections
    // in decode order: 3.5% faster than blocks of 4 pairs with int8, 8% with int4); more rows take blocks of 4
    // pairs (7% faster than eight blocks at 8 rows).
    const int64_t pairs = (tiles + 1) / 2;
    pool().run(pairs, M == 1 ? std::max<int64_t>(4, pairs / 8) : 4, [&](int64_t p_begin, int64_t p_end) {
    for (int64_t pair = p_begin; pair < p_end; ++pair) {
        const int64_t t = 2 * pair;
        const uint8_t* wtile = wq + t * tile_bytes;
        const uint16_t* stile = wd + t * G * 8;
        if (t + 1 < tiles && M > 1) {
            for_blocks<8>(M, [&](auto mc, int64_t m0) {
                tile_pair_rows<decltype(mc)::value, Q4>(x, m0, wtile, tile_bytes, stile, N, t * 8, out);
            });
            continue;
        }
        // A single row (batch-1 decode) or the last, unpaired tile: one 8-row tile at a time.
        for (int64_t u = t; u < t + 2 && u < tiles; ++u) {
            const uint8_t* wu = wq + u * tile_bytes;
            const uint16_t* su = wd + u * G * 8;
            for_blocks<8>(M, [&](auto mc, int64_t m0) {
                tile_rows<decltype(mc)::value, Q4>(x, m0, wu, su, N, u * 8, out);
            });
        }
    }
    });
}

// Rows per OpenMP work item: contiguous so each thread streams its own part of the weight.
constexpr int64_t kRowChunk = 16;

template <bool Q4>
QWEN35_VNNI void vnni_gemm(const int8_t* xq, const float* xd, const int32_t* xc, int64_t M, int64_t K,
                           const uint8_t* wq, const uint16_t* wd, int64_t N, float* out) {
    const int64_t nb = K / kGroup;
    const int64_t row_bytes = Q4 ? K / 2 : K;
    const int64_t chunks = (N + kRowChunk - 1) / kRowChunk;
pool().run(chunks, 2, [&](int64_t c_begin, int64_t c_end) {
    for (int64_t c = c_begin; c < c_end; ++c) {
        const int64_t n_end = (c + 1) * kRowChunk < N ? (c + 1) * kRowChunk : N;
        for (int64_t n = c * kRowChunk; n < n_end; ++n) {
            const uint8_t* wrow = wq + n * row_bytes;
            const uint16_t* drow = wd + n * nb;
            for_blocks<8>(M, [&](auto mc, int64_t m0) {
                vnni_rows<decltype(mc)::value, Q4>(xq, xd, xc, m0, K, wrow, drow, N, n, out);
            });
        }
    }
    });
}

// One (sequence, head) of a gated delta rule decode token, the state S [Dk, Dv] updated in place (Dv % 8 == 0,
// Dv <= 512). With g = exp(decay):  kv = g * (k^T S);  delta = (v - kv) * beta;  S = g * S + k delta^T;  o = q^T S.
// Two passes over the head's state (64 KB for the 4B: it stays in L2), so DRAM sees one read and one write of it.
inline void gdn_head_step(float* S, const float* qb, const float* kb, const float* vb, float decay, float bt,
                          float* ob, int64_t Dk, int64_t Dv) {
    const float g = expf(decay);
    float delta[512];
    for (int64_t j0 = 0; j0 < Dv; j0 += 64) {  // column blocks of 64 keep the accumulators in registers
        const int64_t jn = Dv - j0 < 64 ? (Dv - j0) / 8 : 8;
        __m256 acc[8];
        for (int u = 0; u < 8; ++u) acc[u] = _mm256_setzero_ps();
        for (int64_t i = 0; i < Dk; ++i) {
            const __m256 ki = _mm256_set1_ps(kb[i]);
            const float* row = S + i * Dv + j0;
            for (int u = 0; u < jn; ++u) acc[u] = _mm256_fmadd_ps(ki, _mm256_loadu_ps(row + 8 * u), acc[u]);
        }
        const __m256 gv = _mm256_set1_ps(g), bv = _mm256_set1_ps(bt);
        for (int u = 0; u < jn; ++u) {
            __m256 kv = _mm256_mul_ps(gv, acc[u]);
            _mm256_storeu_ps(delta + j0 + 8 * u, _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(vb + j0 + 8 * u), kv), bv));
        }
    }
    for (int64_t j0 = 0; j0 < Dv; j0 += 64) {
        const int64_t jn = Dv - j0 < 64 ? (Dv - j0) / 8 : 8;
        __m256 o[8], d[8];
        for (int u = 0; u < jn; ++u) {
            o[u] = _mm256_setzero_ps();
            d[u] = _mm256_loadu_ps(delta + j0 + 8 * u);
        }
        const __m256 gv = _mm256_set1_ps(g);
        for (int64_t i = 0; i < Dk; ++i) {
            const __m256 ki = _mm256_set1_ps(kb[i]), qi = _mm256_set1_ps(qb[i]);
            float* row = S + i * Dv + j0;
            for (int u = 0; u < jn; ++u) {
                __m256 sv = _mm256_fmadd_ps(ki, d[u], _mm256_mul_ps(gv, _mm256_loadu_ps(row + 8 * u)));
                _mm256_storeu_ps(row + 8 * u, sv);
                o[u] = _mm256_fmadd_ps(qi, sv, o[u]);
            }
        }
        for (int u = 0; u < jn; ++u) _mm256_storeu_ps(ob + j0 + 8 * u, o[u]);
    }
}

// One step of the causal depthwise conv for one channel: silu(sum_i window[i] * w[i]) over the window
// (s[0..W), x); s then keeps the window's last W values.
inline float conv_channel_step(float* s, const float* w, int64_t W, float x) {
    float acc = 0.0f;
    for (int64_t j = 0; j < W; ++j) acc += s[j] * w[j];
    acc += x * w[W];
    for (int64_t j = 0; j + 1 < W; ++j) s[j] = s[j + 1];
    if (W > 0) s[W - 1] = x;
    return acc / (1.0f + expf(-acc));
}

// x * rsqrt(sum(x^2) + 1e-6) * scale over n values, in place (the layer's l2norm of q and k).
inline void l2norm_scale(float* x, int64_t n, float scale) {
    float ss = 0.0f;
    for (int64_t i = 0; i < n; ++i) ss += x[i] * x[i];
    const float r = 1.0f / sqrtf(ss + 1e-6f) * scale;
    for (int64_t i = 0; i < n; ++i) x[i] *= r;
}

// bf16 weight rows x MC float32 activation rows in 512-bit vectors (AVX-512): each 64-byte line of the weight row
// is widened to float32 once (a bf16 is the top half of a float32) and meets all MC rows; two accumulators per
// row. With several rows (compute-bound) the first row block prefetches the line kPrefetch bytes ahead; a lone
// row streams faster on the hardware prefetcher alone (the 4B's projections: 6% slower with the prefetch).
template <int MC>
QWEN35_VNNI void bf16_rows_512(const float* x, int64_t m0, int64_t K, const uint16_t* wrow, int64_t N, int64_t n,
                               float* out) {
    __m512 acc[MC][2];
    for (int j = 0; j < MC; ++j) acc[j][0] = acc[j][1] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 32 <= K; k += 32) {
        if (MC > 1 && m0 == 0) _mm_prefetch(reinterpret_cast<const char*>(wrow + k) + kPrefetch, _MM_HINT_T0);
        const __m512i raw = _mm512_loadu_si512(reinterpret_cast<const void*>(wrow + k));
        const __m512 w0 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(raw)), 16));
        const __m512 w1 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(raw, 1)), 16));
        for (int j = 0; j < MC; ++j) {
            const float* xr = x + (m0 + j) * K + k;
            acc[j][0] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(xr), acc[j][0]);
            acc[j][1] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(xr + 16), acc[j][1]);
        }
    }
    for (int j = 0; j < MC; ++j) {
        const float* xr = x + (m0 + j) * K;
        float sum = _mm512_reduce_add_ps(_mm512_add_ps(acc[j][0], acc[j][1]));
        for (int64_t t = k; t < K; ++t) {
            uint32_t bits = static_cast<uint32_t>(wrow[t]) << 16;
            float wf;
            memcpy(&wf, &bits, sizeof(wf));
            sum += wf * xr[t];
        }
        out[(m0 + j) * N + n] = sum;
    }
}

inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load8(const uint16_t* p) {  // 8 bfloat16 values, widened exactly (a bf16 is a float32's top half)
    const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
}

// The cached rows of one kv head lie 2 KB apart in blocks scattered over the cache: the out-of-order window sees
// barely one row ahead, so each row is fetched kRowsAhead rows before its use (one layer at 8 x 4096 bf16 tokens:
// 22.8 -> 15-16 ms with 8-24 rows ahead).
constexpr int64_t kRowsAhead = 16;

template <typename T>
inline void prefetch_row(const T* row, int64_t D) {
    const char* p = reinterpret_cast<const char*>(row);
    for (int64_t b = 0; b < D * static_cast<int64_t>(sizeof(T)); b += 64) _mm_prefetch(p + b, _MM_HINT_T0);
}

// Scores of GB (<= 4) query heads against rows [t0, t1) of one kv head: s[g * n + t] = scale * q_g . k_t (D % 16 == 0;
// two accumulators per head, so 2 GB independent chains hide the FMA latency and stay in registers).
template <typename T, int GB>
inline void attn_scores(const float* qb, const T* const* rows, int64_t off, int64_t t0, int64_t t1, int64_t D,
                        float scale, float* s, int64_t n, int64_t prefetch) {
    for (int64_t t = t0; t < t1; ++t) {
        if (prefetch && t + kRowsAhead < t1) prefetch_row(rows[t + kRowsAhead - t0], prefetch);
        const T* k = rows[t - t0] + off;
        __m256 d0[GB], d1[GB];
        for (int g = 0; g < GB; ++g) d0[g] = d1[g] = _mm256_setzero_ps();
        for (int64_t i = 0; i < D; i += 16) {
            const __m256 k0 = load8(k + i), k1 = load8(k + i + 8);
            for (int g = 0; g < GB; ++g) {
                d0[g] = _mm256_fmadd_ps(_mm256_loadu_ps(qb + g * D + i), k0, d0[g]);
                d1[g] = _mm256_fmadd_ps(_mm256_loadu_ps(qb + g * D + i + 8), k1, d1[g]);
            }
        }
        for (int g = 0; g < GB; ++g) s[g * n + t] = hsum(_mm256_add_ps(d0[g], d1[g])) * scale;
    }
}

// acc_g += sum over rows [t0, t1) of s[g * n + t] * v_t for GB (<= 4) heads, 16 columns at a time over the tile
// (its rows stay in L2 across the column passes; 4 GB accumulators in registers).
template <typename T, int GB>
inline void attn_values(const T* const* rows, int64_t off, int64_t t0, int64_t t1, int64_t D, const float* s,
                        int64_t n, float* acc, int64_t prefetch) {
    for (int64_t i = 0; i < D; i += 16) {
        __m256 a0[GB], a1[GB];
        for (int g = 0; g < GB; ++g) {
            a0[g] = _mm256_loadu_ps(acc + g * D + i);
            a1[g] = _mm256_loadu_ps(acc + g * D + i + 8);
        }
        for (int64_t t = t0; t < t1; ++t) {
            if (prefetch && i == 0 && t + kRowsAhead < t1) prefetch_row(rows[t + kRowsAhead - t0], prefetch);
            const T* v = rows[t - t0] + off;
            const __m256 v0 = load8(v + i), v1 = load8(v + i + 8);
            for (int g = 0; g < GB; ++g) {
                const __m256 w = _mm256_broadcast_ss(s + g * n + t);
                a0[g] = _mm256_fmadd_ps(w, v0, a0[g]);
                a1[g] = _mm256_fmadd_ps(w, v1, a1[g]);
            }
        }
        for (int g = 0; g < GB; ++g) {
            _mm256_storeu_ps(acc + g * D + i, a0[g]);
            _mm256_storeu_ps(acc + g * D + i + 8, a1[g]);
        }
    }
}

constexpr int64_t kAttnTile = 256;  // cached rows per tile: 256 x D values of one kv head (128-256 KB at D = 256)

// One decode query per sequence over its paged keys and values (float32 or bfloat16 cache [num_blocks, bs, Hkv, D],
// D % 16 == 0): for sequence b and query head h (kv head h / G, G = Hq / Hkv), out[b, h] = softmax_t(scale * q[b, h]
// . k_t) . v_t over its ctx[b] tokens, token t at row t % bs of block tables[b * max_blocks + t / bs]. q and out
// [B, Hq, D]. Reads the cache where it lies (the torch path gathers the context into a padded copy: B x the
// longest context per layer).
template <typename T>
void paged_attn_decode(const float* q, const T* kc, const T* vc, const int64_t* tables, int64_t max_blocks,
                       const int64_t* ctx, int64_t B, int64_t Hq, int64_t Hkv, int64_t D, int64_t bs, float scale,
                       float* out) {
    const int64_t G = Hq / Hkv;
    // Items: a sequence's kv heads together when there are sequences enough to share out (its cached rows then
    // stream whole, Hkv x D values per token), else one kv head each (a lone sequence still uses every core).
    const int64_t hpi = B >= 4 ? Hkv : 1, groups = Hkv / hpi;
pool().run(B * groups, 1, [&](int64_t begin, int64_t end) {
    thread_local std::vector<float> s, acc;
    const T* rows[kAttnTile];
    for (int64_t item = begin; item < end; ++item) {
        const int64_t b = item / groups, h0 = (item % groups) * hpi, n = ctx[b];
        const int64_t* table = tables + b * max_blocks;
        s.resize(static_cast<size_t>(hpi * G * n));
        acc.assign(static_cast<size_t>(hpi * G * D), 0.0f);
        auto tile_rows = [&](const T* cache, int64_t t0, int64_t t1) {  // token t's row, from kv head h0 on
            for (int64_t t = t0; t < t1; ++t) rows[t - t0] = cache + ((table[t / bs] * bs + t % bs) * Hkv + h0) * D;
        };
        for (int64_t t0 = 0; t0 < n; t0 += kAttnTile) {
            const int64_t t1 = std::min(n, t0 + kAttnTile);
            tile_rows(kc, t0, t1);
            for (int64_t h = 0; h < hpi; ++h) {
                const float* qb = q + (b * Hq + (h0 + h) * G) * D;
                for_blocks<4>(G, [&](auto gb, int64_t g0) {
                    attn_scores<T, decltype(gb)::value>(qb + g0 * D, rows, h * D, t0, t1, D, scale,
                                                        s.data() + (h * G + g0) * n, n,
                                                        h == 0 && g0 == 0 ? hpi * D : 0);
                });
            }
        }
        float inv[1024];
        for (int64_t g = 0; g < hpi * G; ++g) {  // softmax numerators; the sum divides at the end
            float* sg = s.data() + g * n;
            float m = sg[0];
            for (int64_t t = 1; t < n; ++t) m = sg[t] > m ? sg[t] : m;
            float sum = 0.0f;
            for (int64_t t = 0; t < n; ++t) {
                sg[t] = expf(sg[t] - m);
                sum += sg[t];
            }
            inv[g] = 1.0f / sum;
        }
        for (int64_t t0 = 0; t0 < n; t0 += kAttnTile) {
            const int64_t t1 = std::min(n, t0 + kAttnTile);
            tile_rows(vc, t0, t1);
            for (int64_t h = 0; h < hpi; ++h) {
                for_blocks<4>(G, [&](auto gb, int64_t g0) {
                    attn_values<T, decltype(gb)::value>(rows, h * D, t0, t1, D, s.data() + (h * G + g0) * n, n,
                                                        acc.data() + (h * G + g0) * D,
                                                        h == 0 && g0 == 0 ? hpi * D : 0);
                });
            }
        }
        float* ob = out + (b * Hq + h0 * G) * D;  // the item's heads are adjacent in q and out
        for (int64_t g = 0; g < hpi * G; ++g)
            for (int64_t i = 0; i < D; ++i) ob[g * D + i] = acc[g * D + i] * inv[g];
    }
});
}

}  // namespace

extern "C" {

int qwen35_kernels_abi() { return 8; }

// Threads of the kernels' pool (the caller included); set before the first kernel call.
void qwen35_set_threads(int32_t threads) { pool().set_threads(threads); }

void qwen35_quantize_act(const float* x, int64_t M, int64_t K, int8_t* xq, float* xd, int16_t* x8) {
    const int64_t nb = K / kGroup;
    const int64_t total = M * nb;
#pragma omp parallel for schedule(static) if (total > 4096)
    for (int64_t i = 0; i < total; ++i) {
        const float* p = x + i * kGroup;
        float amax = 0.0f;
        for (int k = 0; k < kGroup; ++k) amax = fmaxf(amax, fabsf(p[k]));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        int8_t* q = xq + i * kGroup;
        for (int k = 0; k < kGroup; ++k) q[k] = static_cast<int8_t>(nearbyintf(p[k] * id));
        xd[i] = d;
        if (x8 != nullptr) {
            int16_t* s = x8 + i * 16;
            // maddubs pairs: int16 lane l of the 128-bit half h holds elements 16h + 2l', matching d16's lanes.
            for (int l = 0; l < 16; ++l) s[l] = static_cast<int16_t>(8 * (q[2 * l] + q[2 * l + 1]));
        }
    }
}

void qwen35_q8_gemm(const int8_t* xq, const float* xd, int64_t M, int64_t K, const int8_t* wq, const uint16_t* wd,
                    int64_t N, float* out) {
    const int64_t nb = K / kGroup;
    const int64_t chunks = (N + kRowChunk - 1) / kRowChunk;
pool().run(chunks, 2, [&](int64_t c_begin, int64_t c_end) {
    for (int64_t c = c_begin; c < c_end; ++c) {
        const int64_t n_end = (c + 1) * kRowChunk < N ? (c + 1) * kRowChunk : N;
        for (int64_t n = c * kRowChunk; n < n_end; ++n) {
            const int8_t* wrow = wq + n * K;
            const uint16_t* drow = wd + n * nb;
            int64_t m0 = 0;
            for (; m0 + 4 <= M; m0 += 4) q8_rows<4>(xq, xd, m0, K, wrow, drow, N, n, out);
            switch (M - m0) {
                case 3: q8_rows<3>(xq, xd, m0, K, wrow, drow, N, n, out); break;
                case 2: q8_rows<2>(xq, xd, m0, K, wrow, drow, N, n, out); break;
                case 1: q8_rows<1>(xq, xd, m0, K, wrow, drow, N, n, out); break;
                default: break;
            }
        }
    }
    });
}

void qwen35_q4_gemm(const int8_t* xq, const float* xd, const int16_t* x8, int64_t M, int64_t K, const uint8_t* wq,
                    const uint16_t* wd, int64_t N, float* out) {
    const int64_t nb = K / kGroup;
    const int64_t chunks = (N + kRowChunk - 1) / kRowChunk;
pool().run(chunks, 2, [&](int64_t c_begin, int64_t c_end) {
    for (int64_t c = c_begin; c < c_end; ++c) {
        const int64_t n_end = (c + 1) * kRowChunk < N ? (c + 1) * kRowChunk : N;
        for (int64_t n = c * kRowChunk; n < n_end; ++n) {
            const uint8_t* wrow = wq + n * (K / 2);
            const uint16_t* drow = wd + n * nb;
            int64_t m0 = 0;
            for (; m0 + 4 <= M; m0 += 4) q4_rows<4>(xq, xd, x8, m0, K, wrow, drow, N, n, out);
            switch (M - m0) {
                case 3: q4_rows<3>(xq, xd, x8, m0, K, wrow, drow, N, n, out); break;
                case 2: q4_rows<2>(xq, xd, x8, m0, K, wrow, drow, N, n, out); break;
                case 1: q4_rows<1>(xq, xd, x8, m0, K, wrow, drow, N, n, out); break;
                default: break;
            }
        }
    }
    });
}

int qwen35_has_vnni() {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512bw");
}

// xc[m, g, l] = -(offset) * (x[4l] + ... + x[4l + 3]) of group g: the VNNI kernels' starting accumulators
// (offset 128 for int8 weights, 8 for int4).
void qwen35_act_corrections(const int8_t* xq, int64_t M, int64_t K, int32_t offset, int32_t* xc) {
    const int64_t total = M * K / 4;
    for (int64_t i = 0; i < total; ++i) {
        const int8_t* q = xq + i * 4;
        xc[i] = -offset * (q[0] + q[1] + q[2] + q[3]);
    }
}

void qwen35_q8_gemm_vnni(const int8_t* xq, const float* xd, const int32_t* xc, int64_t M, int64_t K,
                         const int8_t* wq, const uint16_t* wd, int64_t N, float* out) {
    vnni_gemm<false>(xq, xd, xc, M, K, reinterpret_cast<const uint8_t*>(wq), wd, N, out);
}

void qwen35_q4_gemm_vnni(const int8_t* xq, const float* xd, const int32_t* xc, int64_t M, int64_t K,
                         const uint8_t* wq, const uint16_t* wd, int64_t N, float* out) {
    vnni_gemm<true>(xq, xd, xc, M, K, wq, wd, N, out);
}

// One decode token of the gated delta rule for B sequences, each state updated in place in its slot
// (state [num_slots, H, Dk, Dv] float32, Dv % 8 == 0): `gdn_head_step` per (sequence, head).
void qwen35_gdn_recurrent(float* state, const int64_t* slots, int64_t B, int64_t H, int64_t Dk, int64_t Dv,
                          const float* q, const float* k, const float* v, const float* decay, const float* beta,
                          float* out) {
pool().run(B * H, 4, [&](int64_t bh_begin, int64_t bh_end) {
    for (int64_t bh = bh_begin; bh < bh_end; ++bh) {
        const int64_t b = bh / H, h = bh % H;
        gdn_head_step(state + (slots[b] * H + h) * Dk * Dv, q + bh * Dk, k + bh * Dk, v + bh * Dv, decay[bh],
                      beta[bh], out + bh * Dv, Dk, Dv);
    }
    });
}

// One decode token of a whole Gated DeltaNet mixer after its input projection, for B sequences (float32):
// per sequence b, its projection row qkv[b] (C = 2 Hk Dk + Hv Dv channels: q | k | v), z[b] (Hv Dv), beta_in[b]
// and a[b] (Hv each), rows `ld_*` apart. Does the conv step (window in conv_state[slot_b] [C, W], weight [C, W+1]),
// the l2norm of q (times Dk^-0.5) and k, beta = sigmoid(beta_in), decay = -exp(a_log) * softplus(a + dt_bias), the
// delta rule update of rec_state[slot_b] [Hv, Dk, Dv] (value head h reads key head h / (Hv / Hk)), and the gated
// RMSNorm: out[b] (row `ld_out`) = o * rsqrt(mean(o^2) + eps) * norm_w * silu(z) per value head. One work item per
// (sequence, key head): its q and k and the value heads that share them, so no item waits on another.
void qwen35_gdn_decode(const float* qkv, int64_t ld_qkv, const float* z, int64_t ld_z, const float* beta_in,
                       const float* a, int64_t ld_ba, int64_t B, int64_t Hk, int64_t Hv, int64_t Dk, int64_t Dv,
                       float* conv_state, const float* conv_w, int64_t W, float* rec_state, const int64_t* slots,
                       const float* a_log, const float* dt_bias, const float* norm_w, float eps, float* out,
                       int64_t ld_out) {
    const int64_t rep = Hv / Hk, key_dim = Hk * Dk, C = 2 * key_dim + Hv * Dv, K = W + 1;
    const float scale = 1.0f / sqrtf(static_cast<float>(Dk));
pool().run(B * Hk, 1, [&](int64_t begin, int64_t end) {
    float qk[2 * 512], v[512], o[512];
    for (int64_t item = begin; item < end; ++item) {
        const int64_t b = item / Hk, hk = item % Hk;
        float* cs = conv_state + slots[b] * C * W;
        const float* xb = qkv + b * ld_qkv;
        for (int64_t part = 0; part < 2; ++part) {  // q then k of key head hk
            const int64_t c0 = part * key_dim + hk * Dk;
            for (int64_t i = 0; i < Dk; ++i)
                qk[part * Dk + i] = conv_channel_step(cs + (c0 + i) * W, conv_w + (c0 + i) * K, W, xb[c0 + i]);
        }
        l2norm_scale(qk, Dk, scale);
        l2norm_scale(qk + Dk, Dk, 1.0f);
        for (int64_t h = hk * rep; h < (hk + 1) * rep; ++h) {
            const int64_t c0 = 2 * key_dim + h * Dv;
            for (int64_t j = 0; j < Dv; ++j)
                v[j] = conv_channel_step(cs + (c0 + j) * W, conv_w + (c0 + j) * K, W, xb[c0 + j]);
            const float bt = 1.0f / (1.0f + expf(-beta_in[b * ld_ba + h]));
            const float sp_in = a[b * ld_ba + h] + dt_bias[h];
            const float softplus = sp_in > 20.0f ? sp_in : log1pf(expf(sp_in));  // torch's threshold
            const float decay = -expf(a_log[h]) * softplus;
            gdn_head_step(rec_state + (slots[b] * Hv + h) * Dk * Dv, qk, qk + Dk, v, decay, bt, o, Dk, Dv);
            float ss = 0.0f;
            for (int64_t j = 0; j < Dv; ++j) ss += o[j] * o[j];
            const float r = 1.0f / sqrtf(ss / static_cast<float>(Dv) + eps);
            const float* zb = z + b * ld_z + h * Dv;
            float* ob = out + b * ld_out + h * Dv;
            for (int64_t j = 0; j < Dv; ++j) ob[j] = norm_w[j] * (o[j] * r) * (zb[j] / (1.0f + expf(-zb[j])));
        }
    }
});
}

// `paged_attn_decode` over a float32 cache, or a bfloat16 one when kv_bf16.
void qwen35_paged_attn_decode(const float* q, const void* kc, const void* vc, int64_t kv_bf16, const int64_t* tables,
                              int64_t max_blocks, const int64_t* ctx, int64_t B, int64_t Hq, int64_t Hkv, int64_t D,
                              int64_t bs, float scale, float* out) {
    if (kv_bf16)
        paged_attn_decode(q, static_cast<const uint16_t*>(kc), static_cast<const uint16_t*>(vc), tables, max_blocks,
                          ctx, B, Hq, Hkv, D, bs, scale, out);
    else
        paged_attn_decode(q, static_cast<const float*>(kc), static_cast<const float*>(vc), tables, max_blocks, ctx, B,
                          Hq, Hkv, D, bs, scale, out);
}

// One decode token of the GDN layers' causal depthwise conv for B sequences, each window updated in place in its
// slot (state [num_slots, C, W] float32, W = kernel - 1): out[b, c] = silu(sum_i window[i] * weight[c, i]) over
// window = (state[slot_b, c, :], x[b, c]), then the state keeps the window's last W values. Replaces a gather, a
// concatenation, a scatter, a product and a 4-wide sum per layer.
void qwen35_conv_step(float* state, const int64_t* slots, int64_t B, int64_t C, int64_t W, const float* x,
                      const float* weight, float* out) {
    const int64_t K = W + 1;
pool().run(B * C, 2048, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
        const int64_t b = i / C, c = i % C;
        out[b * C + c] = conv_channel_step(state + (slots[b] * C + c) * W, weight + c * K, W, x[b * C + c]);
    }
});
}

// Weight quantisation at load (same arithmetic as the torch path in quant.py, so both give identical bytes):
// w float32 [n, K] -> q [n, K] (int8 values, or int4 nibbles 0..15 one per byte) and float16 scales [n, K/32].
void qwen35_quantize_weight(const float* w, int64_t n, int64_t K, int32_t q4, int8_t* q, uint16_t* scales) {
    const int64_t G = K / kGroup;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n * G; ++i) {
        const float* p = w + i * kGroup;
        int8_t* o = q + i * kGroup;
        float peak = 0.0f, amax = 0.0f;
        for (int k = 0; k < kGroup; ++k) {
            if (fabsf(p[k]) > amax) {
                amax = fabsf(p[k]);
                peak = p[k];
            }
        }
        const float raw = q4 ? peak / -8.0f : amax / 127.0f;
        const uint16_t h = _cvtss_sh(raw, _MM_FROUND_TO_NEAREST_INT);
        const float d = half_to_float(h);
        const float inv = d != 0.0f ? 1.0f / d : 0.0f;
        for (int k = 0; k < kGroup; ++k) {
            float r = nearbyintf(p[k] * inv);
            if (q4) {
                r += 8.0f;
                o[k] = static_cast<int8_t>(r < 0.0f ? 0.0f : (r > 15.0f ? 15.0f : r));
            } else {
                o[k] = static_cast<int8_t>(r < -127.0f ? -127.0f : (r > 127.0f ? 127.0f : r));
            }
        }
        scales[i] = h;
    }
}

// Sum of each group's quantised activation values (the interleaved kernels' correction), xs int32 [M, K/32].
void qwen35_act_group_sums(const int8_t* xq, int64_t M, int64_t K, int32_t* xs) {
    const int64_t total = M * K / kGroup;
    for (int64_t i = 0; i < total; ++i) {
        int32_t sum = 0;
        for (int k = 0; k < kGroup; ++k) sum += xq[i * kGroup + k];
        xs[i] = sum;
    }
}

void qwen35_q8_gemm_tiled(const int8_t* xq, const float* xd, const int32_t* xs, int64_t M, int64_t K,
                          const int8_t* wq, const uint16_t* wd, int64_t N, float* out) {
    tiled_gemm<false>(xq, xd, xs, M, K, reinterpret_cast<const uint8_t*>(wq), wd, N, out);
}

void qwen35_q4_gemm_tiled(const int8_t* xq, const float* xd, const int32_t* xs, int64_t M, int64_t K,
                          const uint8_t* wq, const uint16_t* wd, int64_t N, float* out) {
    tiled_gemm<true>(xq, xd, xs, M, K, wq, wd, N, out);
}

// Dequantise interleaved tiles [t0, t1) to float32 rows [8 t0, 8 t1) (prefill tiles for the fp32 GEMM).
void qwen35_tiled_dequant(const uint8_t* wq, const uint16_t* wd, int64_t K, int64_t t0, int64_t t1, int32_t q4,
                          float* out) {
    const int64_t G = K / kGroup;
    const int64_t tile_bytes = q4 ? 4 * K : 8 * K;
#pragma omp parallel for schedule(dynamic, 8)
    for (int64_t t = t0; t < t1; ++t) {
        const uint8_t* tile = wq + t * tile_bytes;
        for (int64_t g = 0; g < G; ++g) {
            for (int l = 0; l < 8; ++l) {
                const float d = half_to_float(wd[(t * G + g) * 8 + l]);
                float* o = out + ((t - t0) * 8 + l) * K + g * kGroup;
                if (q4) {
                    const uint8_t* p = tile + g * 128;
                    for (int i = 0; i < 4; ++i)
                        for (int j = 0; j < 4; ++j) {
                            const uint8_t byte = p[i * 32 + l * 4 + j];
                            o[4 * i + j] = static_cast<float>((byte & 0x0F) - 8) * d;
                            o[16 + 4 * i + j] = static_cast<float>((byte >> 4) - 8) * d;
                        }
                } else {
                    const int8_t* p = reinterpret_cast<const int8_t*>(tile + g * 256);
                    for (int c = 0; c < 8; ++c)
                        for (int j = 0; j < 4; ++j) o[4 * c + j] = static_cast<float>(p[c * 32 + l * 4 + j]) * d;
                }
            }
        }
    }
}

// bf16 weight x float32 activations, float32 accumulation (8 lanes, then a horizontal sum).
void qwen35_bf16_gemm(const float* x, int64_t M, int64_t K, const uint16_t* w, int64_t N, float* out) {
    const int64_t chunks = (N + kRowChunk - 1) / kRowChunk;
pool().run(chunks, 2, [&](int64_t c_begin, int64_t c_end) {
    for (int64_t c = c_begin; c < c_end; ++c) {
        const int64_t n_end = (c + 1) * kRowChunk < N ? (c + 1) * kRowChunk : N;
        for (int64_t n = c * kRowChunk; n < n_end; ++n) {
            const uint16_t* wrow = w + n * K;
            for (int64_t m = 0; m < M; ++m) {
                const float* xr = x + m * K;
                __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
                int64_t k = 0;
                for (; k + 16 <= K; k += 16) {
                    __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wrow + k));
                    __m256 w0 = _mm256_castsi256_ps(
                        _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_castsi256_si128(raw)), 16));
                    __m256 w1 = _mm256_castsi256_ps(
                        _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_extracti128_si256(raw, 1)), 16));
                    a0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xr + k), a0);
                    a1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xr + k + 8), a1);
                }
                float s = hsum(_mm256_add_ps(a0, a1));
                for (; k < K; ++k) {
                    uint32_t bits = static_cast<uint32_t>(wrow[k]) << 16;
                    float wf;
                    memcpy(&wf, &bits, sizeof(wf));
                    s += wf * xr[k];
                }
                out[m * N + n] = s;
            }
        }
    }
    });
}

// Dequantise weight rows [n0, n1) to float32 (prefill: tiles fed to the fp32 GEMM), out [n1 - n0, K].
// The same product on AVX-512 CPUs (`bf16_rows_512`: the weight line widened once for every activation row).
QWEN35_VNNI void qwen35_bf16_gemm_avx512(const float* x, int64_t M, int64_t K, const uint16_t* w, int64_t N,
                                         float* out) {
    const int64_t chunks = (N + kRowChunk - 1) / kRowChunk;
pool().run(chunks, 2, [&](int64_t c_begin, int64_t c_end) {
    for (int64_t c = c_begin; c < c_end; ++c) {
        const int64_t n_end = (c + 1) * kRowChunk < N ? (c + 1) * kRowChunk : N;
        for (int64_t n = c * kRowChunk; n < n_end; ++n) {
            for_blocks<8>(M, [&](auto mc, int64_t m0) {
                bf16_rows_512<decltype(mc)::value>(x, m0, K, w + n * K, N, n, out);
            });
        }
    }
    });
}

// Zero-centred RMSNorm of M rows of D float32 values: out = x * rsqrt(mean(x^2) + eps) * (1 + w) (the decoder's
// norms; one call where torch takes seven ops). Rows are split over the pool only when there are many.
void qwen35_rmsnorm(const float* x, int64_t M, int64_t D, const float* w, float eps, float* out) {
pool().run(M, 16, [&](int64_t begin, int64_t end) {
    for (int64_t m = begin; m < end; ++m) {
        const float* xr = x + m * D;
        float* o = out + m * D;
        float ss = 0.0f;
        for (int64_t i = 0; i < D; ++i) ss += xr[i] * xr[i];
        const float r = 1.0f / sqrtf(ss / static_cast<float>(D) + eps);
        for (int64_t i = 0; i < D; ++i) o[i] = (xr[i] * r) * (1.0f + w[i]);
    }
});
}

void qwen35_q8_dequant(const int8_t* wq, const uint16_t* wd, int64_t K, int64_t n0, int64_t n1, float* out) {
    const int64_t nb = K / kGroup;
#pragma omp parallel for schedule(static)
    for (int64_t n = n0; n < n1; ++n) {
        for (int64_t b = 0; b < nb; ++b) {
            const float d = half_to_float(wd[n * nb + b]);
            const int8_t* q = wq + n * K + b * kGroup;
            float* o = out + (n - n0) * K + b * kGroup;
            for (int k = 0; k < kGroup; ++k) o[k] = static_cast<float>(q[k]) * d;
        }
    }
}

void qwen35_q4_dequant(const uint8_t* wq, const uint16_t* wd, int64_t K, int64_t n0, int64_t n1, float* out) {
    const int64_t nb = K / kGroup;
#pragma omp parallel for schedule(static)
    for (int64_t n = n0; n < n1; ++n) {
        for (int64_t b = 0; b < nb; ++b) {
            const float d = half_to_float(wd[n * nb + b]);
            const uint8_t* q = wq + n * (K / 2) + b * (kGroup / 2);
            float* o = out + (n - n0) * K + b * kGroup;
            for (int k = 0; k < 16; ++k) {
                o[k] = static_cast<float>((q[k] & 0x0F) - 8) * d;
                o[k + 16] = static_cast<float>((q[k] >> 4) - 8) * d;
            }
        }
    }
}

// Read every byte of a buffer once with both cores (the bandwidth the roofline of `qwen35 bench` divides by);
// returns an OR of the data so the loads cannot be dropped.
uint64_t qwen35_read_bytes(const uint8_t* p, int64_t nbytes) {
    const int64_t n = nbytes / 128;
    uint64_t result = 0;
#pragma omp parallel for schedule(static) reduction(| : result)
    for (int64_t i = 0; i < n; ++i) {
        const __m256i* q = reinterpret_cast<const __m256i*>(p + i * 128);
        __m256i a = _mm256_or_si256(_mm256_loadu_si256(q), _mm256_loadu_si256(q + 1));
        __m256i b = _mm256_or_si256(_mm256_loadu_si256(q + 2), _mm256_loadu_si256(q + 3));
        a = _mm256_or_si256(a, b);
        result |= static_cast<uint64_t>(_mm256_extract_epi64(a, 0) | _mm256_extract_epi64(a, 3));
    }
    return result;
}

}  // extern "C"
