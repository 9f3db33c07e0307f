// The time loops of b2m_neuro.models.stacked_gru, compiled (built and loaded by gru_kernel.py).
//
// Same equations, buffers and layouts as the torch loops in stacked_gru.py (PyTorch's GRU: gates r, z, n).
// A step of one run at hidden 128 is about 50 k multiply-adds; as torch operations, the dispatch and
// the tensor views around them cost about as much as the arithmetic.
// Runs are independent, so each is computed through all its steps before the next: its weights
// (196 KB at hidden 128) stay in cache from step to step, where the torch loops, one batched product
// per step over every run, read all runs' weights (3.1 MB for 16 runs) at every step. Run r is
// computed for its first lengths[r] steps.

#include <cmath>
#include <cstdint>
#include <vector>

namespace {

using Index = std::int64_t;

// target (columns) += vector (rows) @ matrix (rows x columns, row-major). The columns go in blocks of
// 256 bytes whose sums stay in registers over all rows (adding each row straight into target also
// loaded and stored target once per multiply-add, which took twice as long).
template <typename Real>
inline void add_product(const Real* vector, const Real* matrix, Index rows, Index columns, Real* target) {
    constexpr Index block = 256 / sizeof(Real);
    Index start = 0;
    for (; start + block <= columns; start += block) {
        Real sums[block];
        for (Index j = 0; j < block; ++j) sums[j] = target[start + j];
        for (Index i = 0; i < rows; ++i) {
            const Real scale = vector[i];
            const Real* row = matrix + i * columns + start;
            for (Index j = 0; j < block; ++j) sums[j] += scale * row[j];
        }
        for (Index j = 0; j < block; ++j) target[start + j] = sums[j];
    }
    for (Index i = 0; i < rows; ++i) {  // the last columns, fewer than a block
        for (Index j = start; j < columns; ++j) target[j] += vector[i] * matrix[i * columns + j];
    }
}

// tanh(a) is formed as 2 sigmoid(2a) - 1: std::tanh took about as long as the rest of a step.
template <typename Real>
inline Real sigmoid(Real a) {
    return Real(1) / (Real(1) + std::exp(-a));
}

// inputs (R, B, T, I); w_input (R, I, 4H) and bias (R, 4H), by column
// W_ir x + b_ir + b_hr | W_iz x + b_iz + b_hz | b_hn | W_in x + b_in; w_hidden_t (R, H, 3H).
// Writes hidden (T + 1, R, B, H) from step 1 on (hidden[0] is the zero state), gates (T, R, B, 3H):
// r | z | W_hn h + b_hn, and candidate (T, R, B, H): n.
template <typename Real>
void forward(Index steps, Index runs, Index batch, Index size, Index width, const Index* lengths,
             const Real* inputs, const Real* w_input, const Real* bias, const Real* w_hidden_t,
             Real* hidden, Real* gates, Real* candidate) {
    const Index width3 = 3 * size, width4 = 4 * size;
    std::vector<Real> terms(width4);  // one sequence's step: r | z | W_hn h + b_hn | W_in x + b_in (pre-activations)
    Real* row = terms.data();
    for (Index r = 0; r < runs; ++r) {
        for (Index t = 0; t < lengths[r]; ++t) {
            const Real* input_weights = w_input + r * width * width4;
            const Real* hidden_weights = w_hidden_t + r * size * width3;
            const Index first = (t * runs + r) * batch;  // (t, r, b = 0) in the time-major buffers
            for (Index b = 0; b < batch; ++b) {
                const Real* x = inputs + ((r * batch + b) * steps + t) * width;
                const Real* h = hidden + (first + b) * size;
                for (Index j = 0; j < width4; ++j) row[j] = bias[r * width4 + j];
                add_product(x, input_weights, width, width4, row);
                add_product(h, hidden_weights, size, width3, row);
                Real* h_next = hidden + (first + runs * batch + b) * size;
                Real* gate = gates + (first + b) * width3;
                Real* n = candidate + (first + b) * size;
                for (Index j = 0; j < 2 * size; ++j) gate[j] = sigmoid(row[j]);
                for (Index j = 0; j < size; ++j) {
                    gate[2 * size + j] = row[2 * size + j];
                    n[j] = Real(2) * sigmoid(Real(2) * (row[3 * size + j] + gate[j] * row[2 * size + j])) - Real(1);
                    h_next[j] = n[j] + gate[size + j] * (h[j] - n[j]);
                }
            }
        }
    }
}

// factors (T, R, B, 3H): what dL/dh_t is multiplied by, per gate, for the gradient of the gate
// pre-activations (r | z | W_hn h + b_hn); gates as the forward pass wrote them (z: columns H..2H);
// w_hidden (R, 3H, H). grad_h (T, R, B, H) holds the outputs' gradient and is completed in place to
// dL/dh_t; grad_gh (T, R, B, 3H) receives the gate gradients.
template <typename Real>
void backward(Index runs, Index batch, Index size, const Index* lengths, const Real* factors,
              const Real* gates, const Real* w_hidden, Real* grad_h, Real* grad_gh) {
    const Index width3 = 3 * size;
    for (Index r = 0; r < runs; ++r) {
        for (Index t = lengths[r] - 1; t >= 0; --t) {
            const Real* weights = w_hidden + r * width3 * size;
            const Index first = (t * runs + r) * batch;
            for (Index b = 0; b < batch; ++b) {
                const Real* dh = grad_h + (first + b) * size;
                const Real* factor = factors + (first + b) * width3;
                Real* dg = grad_gh + (first + b) * width3;
                for (Index gate = 0; gate < 3; ++gate) {
                    for (Index j = 0; j < size; ++j) dg[gate * size + j] = factor[gate * size + j] * dh[j];
                }
                if (t > 0) {  // dh_(t-1) += dh_t * z_t + dgh_t W_hh
                    const Real* z = gates + (first + b) * width3 + size;
                    Real* before = grad_h + (first - runs * batch + b) * size;
                    for (Index j = 0; j < size; ++j) before[j] += dh[j] * z[j];
                    add_product(dg, weights, width3, size, before);
                }
            }
        }
    }
}

}  // namespace

extern "C" {

void gru_forward_float(Index steps, Index runs, Index batch, Index size, Index width, const Index* lengths,
                       const float* inputs, const float* w_input, const float* bias, const float* w_hidden_t,
                       float* hidden, float* gates, float* candidate) {
    forward(steps, runs, batch, size, width, lengths, inputs, w_input, bias, w_hidden_t, hidden, gates, candidate);
}

void gru_forward_double(Index steps, Index runs, Index batch, Index size, Index width, const Index* lengths,
                        const double* inputs, const double* w_input, const double* bias, const double* w_hidden_t,
                        double* hidden, double* gates, double* candidate) {
    forward(steps, runs, batch, size, width, lengths, inputs, w_input, bias, w_hidden_t, hidden, gates, candidate);
}

void gru_backward_float(Index runs, Index batch, Index size, const Index* lengths, const float* factors,
                        const float* gates, const float* w_hidden, float* grad_h, float* grad_gh) {
    backward(runs, batch, size, lengths, factors, gates, w_hidden, grad_h, grad_gh);
}

void gru_backward_double(Index runs, Index batch, Index size, const Index* lengths, const double* factors,
                         const double* gates, const double* w_hidden, double* grad_h, double* grad_gh) {
    backward(runs, batch, size, lengths, factors, gates, w_hidden, grad_h, grad_gh);
}

}  // extern "C"
