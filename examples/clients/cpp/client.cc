// A C++ client of the tfa-policy-grpc PolicyService, generated from protos/
// alone: lists the policies and prints their specs, runs a CartPole episode
// simulated here with actions from the server over ActionStream, makes one
// unary Action call with a batch, and one call that fails, reading its
// structured error (google.rpc.Status with BadRequest and ErrorInfo details).
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "cartpole.h"
#include "tensors.h"
#include "tfa_policy_grpc/v1/policy_service.grpc.pb.h"

namespace tfa_client {
namespace {

constexpr char kUsage[] =
    "usage: client ADDRESS [POLICY] [options]\n\n"
    "  ADDRESS            host:port of a policy server (policy-server prints it at startup)\n"
    "  POLICY             policy name; default: the server's default policy\n"
    "  --seed N           seed of the simulated CartPole and of the batch (default 0)\n"
    "  --batch N          rows of the unary Action batch (default 8)\n"
    "  --timeout SECONDS  deadline of each call, and of the stream (default 30)\n"
    "  --json             print one JSON document of everything sent and received instead of text\n";
constexpr int kFirst = 0, kMid = 1, kLast = 2;

struct Args {
  std::string address, policy;
  uint32_t seed = 0;
  int batch = 8;
  double timeout = 30;
  bool json = false;
};

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A failed call, with the google.rpc.Status it carried.
struct CallError : std::runtime_error {
  explicit CallError(const RemoteError& e) : std::runtime_error(FormatError(e)[0]), error(e) {}
  RemoteError error;
};

Args ParseArgs(int argc, char** argv) {
  Args args;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto number = [&]() {
      if (i + 1 >= argc) throw UsageError(arg + " needs a value");
      char* end = nullptr;
      double value = std::strtod(argv[++i], &end);
      if (*end != '\0' || !(value >= 0)) throw UsageError(arg + " wants a number >= 0");
      return value;
    };
    if (arg == "-h" || arg == "--help") throw UsageError("");
    else if (arg == "--json") args.json = true;
    else if (arg == "--seed") args.seed = static_cast<uint32_t>(number());
    else if (arg == "--batch") args.batch = static_cast<int>(number());
    else if (arg == "--timeout") args.timeout = number();
    else if (arg.rfind("--", 0) == 0) throw UsageError("unknown option " + arg);
    else positional.push_back(arg);
  }
  if (positional.empty() || positional.size() > 2) throw UsageError("give ADDRESS and optionally POLICY");
  args.address = positional[0];
  if (positional.size() == 2) args.policy = positional[1];
  if (args.batch < 1) throw UsageError("--batch wants at least 1 row");
  return args;
}

std::chrono::system_clock::time_point Deadline(double seconds) {
  return std::chrono::system_clock::now() + std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
}

// The structured error of a failed call: the google.rpc.Status its
// grpc-status-details-bin trailer holds (grpc::Status::error_details), or its
// code and message alone when the server sent none.
RemoteError ReadCallError(const grpc::Status& status) {
  google::rpc::Status rich;
  if (status.error_details().empty() || !rich.ParseFromString(status.error_details())) {
    rich.set_code(status.error_code());
    rich.set_message(status.error_message());
  }
  return ReadStatus(rich);
}

void Check(const grpc::Status& status) {
  if (!status.ok()) throw CallError(ReadCallError(status));
}

// ---- output: text as it happens, or one JSON document at the end ----

std::string Quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += std::string("\\") + c;
    else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else out += c;
  }
  return out + "\"";
}

std::string Number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);  // floats widened from float32 round-trip exactly
  return buf;
}

template <typename T, typename F>
std::string Array(const std::vector<T>& items, F item) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) out += (i ? "," : "") + item(items[i]);
  return out + "]";
}

std::string Rows(const std::vector<std::vector<float>>& rows) {
  return Array(rows, [](const std::vector<float>& row) { return Array(row, [](float v) { return Number(v); }); });
}

std::string ErrorJson(const RemoteError& e) {
  std::string fields = Array(e.fields, [](const std::pair<std::string, std::string>& f) {
    return "{\"field\":" + Quote(f.first) + ",\"description\":" + Quote(f.second) + "}";
  });
  return "{\"code\":" + std::to_string(e.code) + ",\"codeName\":" + Quote(e.code_name) + ",\"message\":" +
         Quote(e.message) + ",\"fields\":" + fields + ",\"reason\":" + Quote(e.reason) + ",\"domain\":" +
         Quote(e.domain) + "}";
}

struct Episode {
  std::vector<std::vector<float>> observations;
  std::vector<int64_t> actions, versions;
  double total = 0;
  bool fell = false;
};

class Output {
 public:
  Output(bool json, std::string address) : json_(json), address_(std::move(address)) {}

  void Policies(const v1::ListPoliciesResponse& r) {
    Add("policies", Array(std::vector<v1::PolicyInfo>(r.policies().begin(), r.policies().end()),
                          [](const v1::PolicyInfo& p) {
                            return "{\"name\":" + Quote(p.name()) + ",\"version\":" + std::to_string(p.version()) +
                                   ",\"backend\":" + Quote(p.backend()) +
                                   ",\"stateful\":" + (p.stateful() ? "true" : "false") + "}";
                          }));
    Print("policies at " + address_ + ":");
    for (const auto& p : r.policies()) {
      Print("  " + p.name() + ": version " + std::to_string(p.version()) + ", backend " + p.backend() + ", " +
            (p.stateful() ? "stateful" : "stateless"));
    }
  }

  void Specs(const v1::GetSpecsResponse& r) {
    Add("policy", Quote(r.policy()));
    Add("version", std::to_string(r.version()));
    const v1::TimeStepSpec& ts = r.specs().time_step_spec();
    Print("specs of '" + r.policy() + "' (version " + std::to_string(r.version()) + "):");
    Print("  time_step_spec:");
    Print("    step_type:\n      " + DescribeSpec(ts.step_type()));
    Lines("    reward:", DescribeSpecs(ts.reward(), "      "));
    Print("    discount:\n      " + DescribeSpec(ts.discount()));
    Lines("    observation:", DescribeSpecs(ts.observation(), "      "));
    Lines("  action_spec:", DescribeSpecs(r.specs().action_spec(), "    "));
    Lines("  policy_state_spec:", DescribeSpecs(r.specs().policy_state_spec(), "    "));
    Lines("  info_spec:", DescribeSpecs(r.specs().info_spec(), "    "));
  }

  void EpisodeDone(const Episode& e) {
    auto integer = [](int64_t v) { return std::to_string(v); };
    Add("episode", "{\"observations\":" + Rows(e.observations) + ",\"actions\":" + Array(e.actions, integer) +
                       ",\"versions\":" + Array(e.versions, integer) + ",\"return\":" + Number(e.total) +
                       ",\"fell\":" + (e.fell ? "true" : "false") + "}");
    std::string actions;
    for (int64_t a : e.actions) actions += (actions.empty() ? "" : " ") + std::to_string(a);
    auto [low, high] = std::minmax_element(e.versions.begin(), e.versions.end());
    Print("episode over ActionStream: " + std::to_string(e.actions.size()) + " steps, return " +
          std::to_string(static_cast<int>(e.total)) + ".0 (" + (e.fell ? "the pole fell" : "time limit") +
          "), versions " + std::to_string(*low) + ".." + std::to_string(*high));
    Print("  actions: " + actions);
  }

  void StreamError(const RemoteError& e) {
    Add("stream_error", ErrorJson(e));
    Error("a wrong request on the stream (observation of shape (3,)) is answered with ActionResponse.error:", e);
  }

  void Batch(const std::vector<std::vector<float>>& observations, const std::vector<int64_t>& actions,
             int64_t version) {
    auto integer = [](int64_t v) { return std::to_string(v); };
    Add("batch", "{\"observations\":" + Rows(observations) + ",\"actions\":" + Array(actions, integer) +
                     ",\"version\":" + std::to_string(version) + "}");
    std::string list;
    for (int64_t a : actions) list += (list.empty() ? "" : ", ") + std::to_string(a);
    Print("unary Action with a batch of " + std::to_string(actions.size()) + ": actions [" + list + "] (version " +
          std::to_string(version) + ")");
  }

  void CallErrorRead(const RemoteError& e) {
    Add("call_error", ErrorJson(e));
    Error("a wrong unary Action (observation of shape (3,)) fails with grpc-status-details-bin:", e);
  }

  void Finish() {
    if (json_) std::cout << "{" << doc_ << "}" << std::endl;
  }

 private:
  void Add(const std::string& key, const std::string& value) {
    doc_ += (doc_.empty() ? "" : ",") + Quote(key) + ":" + value;
  }
  void Print(const std::string& line) {
    if (!json_) std::cout << line << "\n";
  }
  void Lines(const std::string& title, const std::vector<std::string>& lines) {
    Print(title);
    for (const auto& line : lines) Print(line);
  }
  void Error(const std::string& title, const RemoteError& e) {
    Print(title);
    for (const auto& line : FormatError(e)) Print("  " + line);
  }

  bool json_;
  std::string address_, doc_;
};

// ---- the calls ----

int64_t SingleAction(const v1::ActionResponse& response) {
  std::vector<double> values = ActionValues(response);
  if (values.size() != 1) throw std::runtime_error("expected one action, got " + std::to_string(values.size()));
  return static_cast<int64_t>(values[0]);
}

// ActionRequest.answers_read, where the protos this client is built from have it (v1 gained it after its first
// release; the first v1 protos build this client too, and their requests then do not acknowledge).
template <typename Request>
auto SetAnswersRead(Request* request, uint64_t n, int) -> decltype(request->set_answers_read(n), void()) {
  request->set_answers_read(n);
}
template <typename Request>
void SetAnswersRead(Request*, uint64_t, long) {}
template <typename Request>
void SetAnswersRead(Request* request, uint64_t n) { SetAnswersRead(request, n, 0); }

// Runs one episode: the policy answers every time step over the stream.
Episode RunEpisode(grpc::ClientReaderWriter<v1::ActionRequest, v1::ActionResponse>* stream, const Args& args,
                   const std::string& policy, v1::DType obs_dtype) {
  CartPole env(args.seed);
  Episode episode;
  std::vector<float> observation = env.Reset();
  int step_type = kFirst;
  float reward = 0;
  for (uint64_t id = 1;; ++id) {
    v1::ActionRequest request = MakeActionRequest(policy, {observation}, obs_dtype, {{step_type}, {reward}, {1}});
    request.set_request_id(id);
    SetAnswersRead(&request, id - 1);  // the answers read so far (the server may require it: --stream-acks)
    v1::ActionResponse response;
    if (!stream->Write(request) || !stream->Read(&response)) throw std::runtime_error("the ActionStream broke");
    if (response.has_error()) throw CallError(ReadStatus(response.error()));
    if (response.request_id() != id) throw std::runtime_error("an answer to another request_id");
    int64_t action = SingleAction(response);
    episode.observations.push_back(observation);
    episode.actions.push_back(action);
    episode.versions.push_back(response.version());
    CartPole::Step step = env.Advance(action);
    episode.total += step.reward;
    if (step.done) {
      episode.fell = step.fell;
      return episode;
    }
    observation = step.observation;
    step_type = kMid;
    reward = step.reward;
  }
}

// A request the server must refuse: an observation one element short.
v1::ActionRequest WrongRequest(const std::string& policy, v1::DType obs_dtype) {
  return MakeActionRequest(policy, {{0, 0, 0}}, obs_dtype, {{kLast}, {0}, {0}});
}

void Run(const Args& args, Output* out) {
  auto channel = grpc::CreateChannel(args.address, grpc::InsecureChannelCredentials());
  if (!channel->WaitForConnected(Deadline(args.timeout))) {
    throw std::runtime_error("no policy server reachable at " + args.address + " within " +
                             Number(args.timeout) + "s");
  }
  auto stub = v1::PolicyService::NewStub(channel);
  auto context = [&args]() {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(Deadline(args.timeout));
    return ctx;
  };

  v1::ListPoliciesResponse policies;
  Check(stub->ListPolicies(context().get(), {}, &policies));
  out->Policies(policies);
  v1::GetSpecsRequest specs_request;
  specs_request.set_policy(args.policy);
  v1::GetSpecsResponse specs;
  Check(stub->GetSpecs(context().get(), specs_request, &specs));
  out->Specs(specs);
  const std::string& policy = specs.policy();
  for (const auto& p : policies.policies()) {
    if (p.name() == policy && p.stateful()) {
      throw std::runtime_error("policy '" + policy + "' is stateful: this example sends no policy state");
    }
  }
  v1::DType obs_dtype = VectorObservationSpec(specs.specs(), 4).dtype();

  auto stream_context = context();
  auto stream = stub->ActionStream(stream_context.get());
  Episode episode = RunEpisode(stream.get(), args, policy, obs_dtype);
  out->EpisodeDone(episode);
  v1::ActionResponse stream_answer;
  v1::ActionRequest wrong = WrongRequest(policy, obs_dtype);
  SetAnswersRead(&wrong, episode.actions.size());
  if (!stream->Write(wrong) || !stream->Read(&stream_answer)) {
    throw std::runtime_error("the ActionStream broke");
  }
  if (!stream_answer.has_error()) throw std::runtime_error("ActionStream accepted an observation of the wrong shape");
  out->StreamError(ReadStatus(stream_answer.error()));
  stream->WritesDone();
  Check(stream->Finish());

  CartPole rows(args.seed + 1);
  std::vector<std::vector<float>> observations = rows.RandomObservations(args.batch);
  Steps steps{std::vector<int>(args.batch, kMid), std::vector<float>(args.batch, 1),
              std::vector<float>(args.batch, 1), true};
  v1::ActionResponse batch_answer;
  Check(stub->Action(context().get(), MakeActionRequest(policy, observations, obs_dtype, steps), &batch_answer));
  std::vector<int64_t> actions;
  for (double a : ActionValues(batch_answer)) actions.push_back(static_cast<int64_t>(a));
  out->Batch(observations, actions, batch_answer.version());

  v1::ActionResponse unexpected;
  grpc::Status status = stub->Action(context().get(), WrongRequest(policy, obs_dtype), &unexpected);
  if (status.ok()) throw std::runtime_error("Action accepted an observation of the wrong shape");
  out->CallErrorRead(ReadCallError(status));
}

}  // namespace
}  // namespace tfa_client

int main(int argc, char** argv) {
  using namespace tfa_client;
  Args args;
  try {
    args = ParseArgs(argc, argv);
  } catch (const UsageError& e) {
    std::cerr << kUsage << (*e.what() ? std::string("\nerror: ") + e.what() + "\n" : "");
    return *e.what() ? 2 : 0;
  }
  Output out(args.json, args.address);
  try {
    Run(args, &out);
  } catch (const CallError& e) {
    std::string text;
    for (const auto& line : FormatError(e.error)) text += (text.empty() ? "" : "\n") + line;
    std::cerr << "error: " << text << std::endl;
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << std::endl;
    return 1;
  }
  out.Finish();
  return 0;
}
