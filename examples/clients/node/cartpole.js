// CartPole-v0 simulated in JavaScript: the dynamics of gym's CartPoleEnv
// (Euler steps of 20 ms, the episode ends when the pole passes 12 degrees,
// the cart leaves [-2.4, 2.4] or after 200 steps), with a seeded generator.
'use strict';

const GRAVITY = 9.8;
const MASS_CART = 1.0;
const MASS_POLE = 0.1;
const TOTAL_MASS = MASS_CART + MASS_POLE;
const HALF_LENGTH = 0.5;
const POLE_MASS_LENGTH = MASS_POLE * HALF_LENGTH;
const FORCE = 10.0;
const TAU = 0.02;
const THETA_LIMIT = (12 * 2 * Math.PI) / 360;
const X_LIMIT = 2.4;
const MAX_STEPS = 200;

// mulberry32: a small seeded generator of floats in [0, 1).
function random(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class CartPole {
  constructor(seed) {
    this.uniform = random(seed);
    this.state = null;
    this.steps = 0;
  }

  // The first observation: every state variable uniform in [-0.05, 0.05].
  reset() {
    this.state = Array.from({ length: 4 }, () => this.uniform() * 0.1 - 0.05);
    this.steps = 0;
    return this.observation();
  }

  // Pushes the cart left (action 0) or right (1); returns {observation, reward, done}.
  step(action) {
    if (action !== 0 && action !== 1) throw new Error(`CartPole actions are 0 or 1, got ${action}`);
    let [x, xDot, theta, thetaDot] = this.state;
    const force = action === 1 ? FORCE : -FORCE;
    const cos = Math.cos(theta);
    const sin = Math.sin(theta);
    const temp = (force + POLE_MASS_LENGTH * thetaDot * thetaDot * sin) / TOTAL_MASS;
    const thetaAcc = (GRAVITY * sin - cos * temp)
      / (HALF_LENGTH * (4.0 / 3.0 - (MASS_POLE * cos * cos) / TOTAL_MASS));
    const xAcc = temp - (POLE_MASS_LENGTH * thetaAcc * cos) / TOTAL_MASS;
    x += TAU * xDot;
    xDot += TAU * xAcc;
    theta += TAU * thetaDot;
    thetaDot += TAU * thetaAcc;
    this.state = [x, xDot, theta, thetaDot];
    this.steps += 1;
    const fell = Math.abs(x) > X_LIMIT || Math.abs(theta) > THETA_LIMIT;
    return { observation: this.observation(), reward: 1.0, done: fell || this.steps >= MAX_STEPS, fell };
  }

  // The state as the float32 values the policy sees (gym returns float32 observations).
  observation() {
    return this.state.map(Math.fround);
  }

  // `count` float32 observations spread over CartPole's usual range (for a batch).
  randomObservations(count) {
    const scale = [2.0, 2.0, 0.2, 2.0];
    return Array.from({ length: count }, () => scale.map((s) => Math.fround((this.uniform() * 2 - 1) * s)));
  }
}

module.exports = { CartPole };
