// CartPole-v0 simulated in C++: the dynamics of gym's CartPoleEnv (Euler steps
// of 20 ms; the episode ends when the pole passes 12 degrees, the cart leaves
// [-2.4, 2.4] or after 200 steps), with a seeded generator (mulberry32, the
// same as the Node client's).
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <vector>

namespace tfa_client {

class CartPole {
 public:
  struct Step {
    std::vector<float> observation;
    float reward;
    bool done;
    bool fell;
  };

  explicit CartPole(uint32_t seed) : state_rng_(seed) {}

  // The first observation: every state variable uniform in [-0.05, 0.05].
  std::vector<float> Reset() {
    for (double& s : state_) s = Uniform() * 0.1 - 0.05;
    steps_ = 0;
    return Observation();
  }

  // Pushes the cart left (action 0) or right (1).
  Step Advance(int64_t action) {
    if (action != 0 && action != 1) throw std::runtime_error("CartPole actions are 0 or 1");
    auto& [x, x_dot, theta, theta_dot] = state_;
    const double force = action == 1 ? kForce : -kForce;
    const double cos = std::cos(theta), sin = std::sin(theta);
    const double temp = (force + kPoleMassLength * theta_dot * theta_dot * sin) / kTotalMass;
    const double theta_acc =
        (kGravity * sin - cos * temp) / (kHalfLength * (4.0 / 3.0 - kMassPole * cos * cos / kTotalMass));
    const double x_acc = temp - kPoleMassLength * theta_acc * cos / kTotalMass;
    x += kTau * x_dot;
    x_dot += kTau * x_acc;
    theta += kTau * theta_dot;
    theta_dot += kTau * theta_acc;
    ++steps_;
    const bool fell = std::abs(x) > kXLimit || std::abs(theta) > kThetaLimit;
    return {Observation(), 1.0f, fell || steps_ >= kMaxSteps, fell};
  }

  // `count` observations spread over CartPole's usual range (for a batch).
  std::vector<std::vector<float>> RandomObservations(int count) {
    const double scale[4] = {2.0, 2.0, 0.2, 2.0};
    std::vector<std::vector<float>> rows(count);
    for (auto& row : rows) {
      for (double s : scale) row.push_back(static_cast<float>((Uniform() * 2 - 1) * s));
    }
    return rows;
  }

 private:
  static constexpr double kGravity = 9.8, kMassCart = 1.0, kMassPole = 0.1, kTotalMass = kMassCart + kMassPole;
  static constexpr double kHalfLength = 0.5, kPoleMassLength = kMassPole * kHalfLength, kForce = 10.0;
  static constexpr double kTau = 0.02, kThetaLimit = 12 * 2 * M_PI / 360, kXLimit = 2.4;
  static constexpr int kMaxSteps = 200;

  // mulberry32: floats in [0, 1).
  double Uniform() {
    state_rng_ += 0x6d2b79f5u;
    uint32_t t = state_rng_;
    t = (t ^ (t >> 15)) * (t | 1u);
    t ^= t + (t ^ (t >> 7)) * (t | 61u);
    return static_cast<double>(t ^ (t >> 14)) / 4294967296.0;
  }

  // The state as the float32 values the policy sees (gym returns float32 observations).
  std::vector<float> Observation() const {
    return {static_cast<float>(state_[0]), static_cast<float>(state_[1]), static_cast<float>(state_[2]),
            static_cast<float>(state_[3])};
  }

  uint32_t state_rng_;
  std::array<double, 4> state_{};
  int steps_ = 0;
};

}  // namespace tfa_client
