// Tensor, Nest and TimeStep messages built and read; google.rpc.Status details read.
#include "tensors.h"

#include <cctype>
#include <cmath>
#include <cstring>
#include <sstream>
#include <stdexcept>

#include "google/rpc/error_details.pb.h"

namespace tfa_client {
namespace {

// Element size of each numeric dtype; 0 for the ones this client does not handle.
int ElementSize(v1::DType dtype) {
  switch (dtype) {
    case v1::DTYPE_BOOL: case v1::DTYPE_INT8: case v1::DTYPE_UINT8: return 1;
    case v1::DTYPE_INT16: case v1::DTYPE_UINT16: return 2;
    case v1::DTYPE_INT32: case v1::DTYPE_UINT32: case v1::DTYPE_FLOAT32: return 4;
    case v1::DTYPE_INT64: case v1::DTYPE_UINT64: case v1::DTYPE_FLOAT64: return 8;
    default: return 0;
  }
}

int CheckedSize(v1::DType dtype) {
  int size = ElementSize(dtype);
  if (size == 0) throw std::runtime_error("dtype " + v1::DType_Name(dtype) + " is not supported by this client");
  return size;
}

int64_t Product(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// `size` bytes of `bits`, little-endian, whatever the host's byte order.
void PutLittleEndian(uint64_t bits, int size, std::string* out) {
  for (int i = 0; i < size; ++i) out->push_back(static_cast<char>((bits >> (8 * i)) & 0xff));
}

uint64_t GetLittleEndian(const std::string& bytes, size_t offset, int size) {
  uint64_t bits = 0;
  for (int i = 0; i < size; ++i) bits |= uint64_t{static_cast<unsigned char>(bytes[offset + i])} << (8 * i);
  return bits;
}

uint64_t Encode(v1::DType dtype, double value) {
  switch (dtype) {
    case v1::DTYPE_FLOAT32: {
      float f = static_cast<float>(value);
      uint32_t bits;
      std::memcpy(&bits, &f, 4);
      return bits;
    }
    case v1::DTYPE_FLOAT64: {
      uint64_t bits;
      std::memcpy(&bits, &value, 8);
      return bits;
    }
    case v1::DTYPE_BOOL: return value != 0 ? 1 : 0;
    default: return static_cast<uint64_t>(static_cast<int64_t>(value));  // two's complement, cut to size
  }
}

double Decode(v1::DType dtype, uint64_t bits) {
  switch (dtype) {
    case v1::DTYPE_FLOAT32: {
      uint32_t b = static_cast<uint32_t>(bits);
      float f;
      std::memcpy(&f, &b, 4);
      return f;
    }
    case v1::DTYPE_FLOAT64: {
      double d;
      std::memcpy(&d, &bits, 8);
      return d;
    }
    case v1::DTYPE_INT8: return static_cast<int8_t>(bits);
    case v1::DTYPE_INT16: return static_cast<int16_t>(bits);
    case v1::DTYPE_INT32: return static_cast<int32_t>(bits);
    case v1::DTYPE_INT64: return static_cast<double>(static_cast<int64_t>(bits));
    default: return static_cast<double>(bits);  // bool and unsigned integers
  }
}

std::string FormatNumber(double v) {
  std::ostringstream out;
  out.precision(6);
  out << v;
  return out.str();
}

std::string FormatBound(const v1::Tensor& tensor) {
  std::vector<double> values = TensorValues(tensor);
  if (values.size() == 1) return FormatNumber(values[0]);
  std::string text = "[";
  for (size_t i = 0; i < values.size(); ++i) text += (i ? ", " : "") + FormatNumber(values[i]);
  return text + "]";
}

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

v1::Nest Leaf(v1::Tensor tensor) {
  v1::Nest nest;
  *nest.mutable_tensor() = std::move(tensor);
  return nest;
}

}  // namespace

v1::Tensor MakeTensor(v1::DType dtype, const std::vector<int64_t>& shape, const std::vector<double>& values) {
  int size = CheckedSize(dtype);
  if (static_cast<int64_t>(values.size()) != Product(shape)) {
    throw std::runtime_error(std::to_string(values.size()) + " values do not fill the tensor's shape");
  }
  v1::Tensor tensor;
  tensor.set_dtype(dtype);
  for (int64_t d : shape) tensor.add_shape(d);
  std::string* content = tensor.mutable_content();
  for (double v : values) PutLittleEndian(Encode(dtype, v), size, content);
  return tensor;
}

std::vector<double> TensorValues(const v1::Tensor& tensor) {
  int size = CheckedSize(tensor.dtype());
  std::vector<int64_t> shape(tensor.shape().begin(), tensor.shape().end());
  int64_t count = Product(shape);
  if (static_cast<int64_t>(tensor.content().size()) != count * size) {
    throw std::runtime_error("a " + v1::DType_Name(tensor.dtype()) + " tensor with " +
                             std::to_string(tensor.content().size()) + " content bytes for " +
                             std::to_string(count) + " elements");
  }
  std::vector<double> values;
  for (int64_t i = 0; i < count; ++i) values.push_back(Decode(tensor.dtype(), GetLittleEndian(tensor.content(), i * size, size)));
  return values;
}

v1::ActionRequest MakeActionRequest(const std::string& policy, const std::vector<std::vector<float>>& observations,
                                    v1::DType observation_dtype, const Steps& steps) {
  std::vector<int64_t> outer;
  if (steps.batched) outer.push_back(static_cast<int64_t>(observations.size()));
  std::vector<int64_t> observation_shape = outer;
  observation_shape.push_back(static_cast<int64_t>(observations.at(0).size()));
  std::vector<double> flat;
  for (const auto& row : observations) flat.insert(flat.end(), row.begin(), row.end());

  v1::ActionRequest request;
  request.set_policy(policy);
  v1::TimeStep* time_step = request.mutable_time_step();
  *time_step->mutable_step_type() = MakeTensor(v1::DTYPE_INT32, outer, {steps.step_types.begin(), steps.step_types.end()});
  *time_step->mutable_reward() = Leaf(MakeTensor(v1::DTYPE_FLOAT32, outer, {steps.rewards.begin(), steps.rewards.end()}));
  *time_step->mutable_discount() = MakeTensor(v1::DTYPE_FLOAT32, outer, {steps.discounts.begin(), steps.discounts.end()});
  *time_step->mutable_observation() = Leaf(MakeTensor(observation_dtype, observation_shape, flat));
  request.mutable_policy_state()->mutable_tuple();  // the empty tuple: no policy state
  if (steps.batched) request.set_batch_size(static_cast<uint32_t>(observations.size()));
  return request;
}

std::vector<double> ActionValues(const v1::ActionResponse& response) {
  const v1::Nest& action = response.policy_step().action();
  if (action.value_case() != v1::Nest::kTensor) {
    throw std::runtime_error("the answer has no single-tensor action (this client handles single-tensor action specs)");
  }
  return TensorValues(action.tensor());
}

std::string DescribeSpec(const v1::ArraySpec& spec) {
  std::string text = Lower(v1::DType_Name(spec.dtype()).substr(6)) + "(";
  for (int i = 0; i < spec.shape_size(); ++i) text += (i ? ", " : "") + std::to_string(spec.shape(i));
  text += spec.shape_size() == 1 ? ",)" : ")";
  if (!spec.name().empty()) text += " '" + spec.name() + "'";
  if (spec.has_bounds()) {
    std::string low = FormatBound(spec.bounds().minimum()), high = FormatBound(spec.bounds().maximum());
    text += low[0] == '[' ? " min " + low + " max " + high : " in [" + low + ", " + high + "]";
  }
  return text;
}

std::vector<std::string> DescribeSpecs(const v1::Nest& nest, const std::string& indent) {
  std::vector<std::string> lines;
  auto add = [&lines](const std::vector<std::string>& more) { lines.insert(lines.end(), more.begin(), more.end()); };
  switch (nest.value_case()) {
    case v1::Nest::kSpec:
      return {indent + DescribeSpec(nest.spec())};
    case v1::Nest::kTuple:
    case v1::Nest::kList: {
      const v1::NestSequence& seq = nest.has_tuple() ? nest.tuple() : nest.list();
      if (seq.values_size() == 0) return {indent + "()"};
      for (int i = 0; i < seq.values_size(); ++i) {
        lines.push_back(indent + "[" + std::to_string(i) + "]");
        add(DescribeSpecs(seq.values(i), indent + "  "));
      }
      return lines;
    }
    case v1::Nest::kDict:
      for (const auto& entry : nest.dict().entries()) {
        lines.push_back(indent + entry.key() + ":");
        add(DescribeSpecs(entry.value(), indent + "  "));
      }
      return lines;
    case v1::Nest::kNamedTuple:
      lines.push_back(indent + nest.named_tuple().type_name());
      for (const auto& field : nest.named_tuple().fields()) {
        lines.push_back(indent + "  " + field.key() + ":");
        add(DescribeSpecs(field.value(), indent + "    "));
      }
      return lines;
    case v1::Nest::kNone:
      return {indent + "None"};
    default:
      return {indent + "(unset)"};
  }
}

const v1::ArraySpec& VectorObservationSpec(const v1::PolicySpecs& specs, int64_t width) {
  const v1::Nest& nest = specs.time_step_spec().observation();
  bool ok = nest.has_spec() && nest.spec().shape_size() == 1 && nest.spec().shape(0) == width &&
            (nest.spec().dtype() == v1::DTYPE_FLOAT32 || nest.spec().dtype() == v1::DTYPE_FLOAT64);
  if (!ok) {
    std::string got;
    for (const auto& line : DescribeSpecs(nest, " ")) got += line;
    throw std::runtime_error("this client simulates CartPole: it needs a float observation of shape (" +
                             std::to_string(width) + ",), the policy wants" + got);
  }
  return nest.spec();
}

const char* CodeName(int code) {
  static const char* const kNames[] = {
      "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
      "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
      "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"};
  return code >= 0 && code < 17 ? kNames[code] : "UNKNOWN";
}

RemoteError ReadStatus(const google::rpc::Status& status) {
  RemoteError error;
  error.code = status.code();
  error.code_name = CodeName(status.code());
  error.message = status.message();
  for (const auto& detail : status.details()) {
    google::rpc::BadRequest bad_request;
    google::rpc::ErrorInfo info;
    if (detail.UnpackTo(&bad_request)) {
      for (const auto& v : bad_request.field_violations()) error.fields.emplace_back(v.field(), v.description());
    } else if (detail.UnpackTo(&info)) {
      error.reason = info.reason();
      error.domain = info.domain();
    }
  }
  return error;
}

std::vector<std::string> FormatError(const RemoteError& error) {
  std::vector<std::string> lines = {error.code_name + ": " + error.message};
  for (const auto& [field, description] : error.fields) lines.push_back("  field " + field + ": " + description);
  if (!error.reason.empty()) lines.push_back("  reason " + error.reason + " (domain " + error.domain + ")");
  return lines;
}

}  // namespace tfa_client
