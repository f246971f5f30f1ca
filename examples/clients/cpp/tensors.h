// Tensor, Nest and TimeStep messages of protos/tfa_policy_grpc/v1/types.proto,
// and the structured errors of google.rpc.Status: built and read here.
// A Tensor's `content` holds its elements in row-major order, little-endian,
// with no padding.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "google/rpc/status.pb.h"
#include "tfa_policy_grpc/v1/policy_service.pb.h"

namespace tfa_client {

namespace v1 = ::tfa_policy_grpc::v1;

// A Tensor of `dtype` and `shape` holding `values` (flat, row-major).
v1::Tensor MakeTensor(v1::DType dtype, const std::vector<int64_t>& shape, const std::vector<double>& values);

// The flat element values of a numeric Tensor (64-bit integers as doubles:
// exact up to 2^53). Throws std::runtime_error on a malformed tensor.
std::vector<double> TensorValues(const v1::Tensor& tensor);

// How each row of a request looks: TF-Agents' step type (FIRST = 0, MID = 1,
// LAST = 2), reward and discount, one entry per observation.
struct Steps {
  std::vector<int> step_types;
  std::vector<float> rewards;
  std::vector<float> discounts;
  bool batched = false;
};

// An ActionRequest for `observations` (one row each when batched, exactly one
// when not) of a stateless policy.
v1::ActionRequest MakeActionRequest(const std::string& policy, const std::vector<std::vector<float>>& observations,
                                    v1::DType observation_dtype, const Steps& steps);

// The flat action values of a response whose action nest is one tensor.
std::vector<double> ActionValues(const v1::ActionResponse& response);

// "float32(4,) 'observation' min [...] max [...]".
std::string DescribeSpec(const v1::ArraySpec& spec);

// Lines describing a spec nest, each starting with `indent`.
std::vector<std::string> DescribeSpecs(const v1::Nest& nest, const std::string& indent);

// The observation spec of a policy, checked to be one float vector of
// `width` elements (what the CartPole simulation produces).
const v1::ArraySpec& VectorObservationSpec(const v1::PolicySpecs& specs, int64_t width);

// A google.rpc.Status read: its BadRequest field violations and ErrorInfo.
struct RemoteError {
  int code = 0;
  std::string code_name;
  std::string message;
  std::vector<std::pair<std::string, std::string>> fields;  // field, description
  std::string reason;
  std::string domain;
};

RemoteError ReadStatus(const google::rpc::Status& status);

// "INVALID_ARGUMENT: message" and one line per field violation and reason.
std::vector<std::string> FormatError(const RemoteError& error);

const char* CodeName(int code);

}  // namespace tfa_client
