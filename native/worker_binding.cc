// The Driver class: a JavaScript thread (a Node.js worker thread, or any thread in tests)
// attaches one relay worker of a listening engine and drives it from its own event loop. The
// worker's epoll descriptor is watched by that loop (uv_poll), timed work by a uv_timer, and
// after each round the records the round produced are handed synchronously to onRecords, whose
// answer (a decision list) is applied before the loop goes on: no other thread is involved
// between accept and the upstream connect. The thread that created the Driver only.
#include <napi.h>
#include <pthread.h>
#include <uv.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <string>

#include "binding.h"
#include "engine.h"
#include "worker_thread.h"

namespace mmproxy {

namespace {

// decisions(flat): one array of decisions one after the other, [id, reason] for a reject and
// [id, -1, sourceAddress, sourcePort, targetAddress, targetPort, mark] for an admit. A list of
// the wrong shape is false (and decides nothing): lib/ builds it, so that is a bug there. An
// admit whose addresses this parser refuses, or of two families, refuses only that connection
// (routeRejected): lib/ checks them first, and one answer it let through must not stall the
// whole batch.
bool parse_decisions(Napi::Array list, std::vector<Decision>* out) {
  const uint32_t length = list.Length();
  bool bad = false;
  // An integer in [min, max], or bad.
  auto integer = [&](uint32_t i, double min, double max) -> double {
    Napi::Value v = list.Get(i);
    const double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : NAN;
    if (!(d >= min && d <= max) || d != std::floor(d)) {
      bad = true;
      return min;
    }
    return d;
  };
  auto text = [&](uint32_t i) -> std::string {
    Napi::Value v = list.Get(i);
    if (v.IsString()) return v.As<Napi::String>().Utf8Value();
    bad = true;
    return std::string();
  };
  std::string last_src, last_dst;
  SockAddr last_source, last_target;
  // Consecutive decisions mostly share their target (and, for LOCAL, their source).
  auto address = [&](const std::string& ip, double port, std::string* last_ip, SockAddr* last,
                     SockAddr* into) -> bool {
    if (!last_ip->empty() && ip == *last_ip) {
      *into = *last;
    } else if (SockAddr::parse(ip.c_str(), 0, into)) {
      *last_ip = ip;
      *last = *into;
    } else {
      return false;
    }
    into->set_port(uint16_t(port));
    return true;
  };
  uint32_t i = 0;
  while (i < length && !bad) {
    Decision d;
    if (i + 2 > length) break;
    d.id = uint64_t(integer(i, 0, 9007199254740992.0));
    const int reason = int(integer(i + 1, -1, kRejectReasonCount - 1));
    if (reason >= 0) {
      d.admit = false;
      d.reason = reason;
      i += 2;
    } else {
      if (i + 7 > length) break;
      d.admit = true;
      const std::string src = text(i + 2), dst = text(i + 4);
      const double src_port = integer(i + 3, 0, 65535), dst_port = integer(i + 5, 1, 65535);
      d.mark = uint32_t(integer(i + 6, 0, 4294967295.0));
      if (bad) break;
      if (!address(src, src_port, &last_src, &last_source, &d.source) ||
          !address(dst, dst_port, &last_dst, &last_target, &d.target) ||
          d.source.family() != d.target.family()) {
        d.admit = false;
        d.reason = kRouteRejected;
      }
      i += 7;
    }
    out->push_back(std::move(d));
  }
  return !bad && i == length;
}

class DriverWrap : public Napi::ObjectWrap<DriverWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Driver",
                       {
                           InstanceMethod<&DriverWrap::Decide>("decide"),
                           InstanceMethod<&DriverWrap::Pending>("pending"),
                           InstanceMethod<&DriverWrap::Ref>("ref"),
                           InstanceMethod<&DriverWrap::Unref>("unref"),
                           InstanceMethod<&DriverWrap::HaltMethod>("halt"),
                       });
  }

  // new Driver(engineId, workerIndex, onRecords(meta, addresses, headerBytes, errors) →
  //            decisions | undefined, onEnd())
  DriverWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<DriverWrap>(info) {
    Napi::Env env = info.Env();
    if (!info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsFunction() ||
        !info[3].IsFunction()) {
      Napi::TypeError::New(env, "Driver(engineId, workerIndex, onRecords, onEnd)")
          .ThrowAsJavaScriptException();
      return;
    }
    engine_ = find_engine(info[0].As<Napi::Number>().Uint32Value());
    index_ = info[1].As<Napi::Number>().Int32Value();
    worker_ = engine_ ? engine_->attach(index_) : nullptr;
    if (!worker_) {
      Napi::Error::New(env, "Driver: no such engine worker to attach (closed, or attached)")
          .ThrowAsJavaScriptException();
      return;
    }
    // Named for top -H and /proc/PID/task/*/comm: "mmproxy-relay0" (15 bytes at most).
    pthread_setname_np(pthread_self(),
                       ("mmproxy-relay" + std::to_string(index_)).substr(0, 15).c_str());
    on_records_ = Napi::Persistent(info[2].As<Napi::Function>());
    on_end_ = Napi::Persistent(info[3].As<Napi::Function>());
    self_ = Napi::Persistent(Value());  // alive until the worker ends
    context_ = std::make_unique<Napi::AsyncContext>(env, "mmproxy-native worker");
    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    handles_ = new Handles;
    handles_->owner = this;
    uv_poll_init(loop, &handles_->poll, worker_->poll_fd());
    uv_timer_init(loop, &handles_->timer);
    handles_->poll.data = handles_;
    handles_->timer.data = handles_;
    uv_poll_start(&handles_->poll, UV_READABLE,
                  [](uv_poll_t* p, int, int) { static_cast<Handles*>(p->data)->owner->Run(); });
    // The thread's teardown (worker.terminate(), process exit, a crash) ends the worker here,
    // closing its connections, so that Engine::close() never waits for a thread that is gone.
    napi_add_env_cleanup_hook(env, &DriverWrap::Teardown, this);
    has_cleanup_ = true;
    env_ = env;
    // Connections may have queued while the thread started.
    uv_timer_start(&handles_->timer, OnTimer, 0, 0);
  }

  ~DriverWrap() override {
    if (has_cleanup_) napi_remove_env_cleanup_hook(env_, &DriverWrap::Teardown, this);
  }

 private:
  struct Handles {
    uv_poll_t poll;
    uv_timer_t timer;
    DriverWrap* owner;
    int open = 2;
  };

  static void OnTimer(uv_timer_t* t) { static_cast<Handles*>(t->data)->owner->Run(); }

  // One round of the worker's events, its decisions, and when to come back.
  void Run() {
    if (ended_ || running_ || halted_) return;
    running_ = true;
    Napi::HandleScope scope(env_);
    const bool alive = worker_->round();
    Deliver();
    running_ = false;
    if (!alive) {
      End();
      return;
    }
    Schedule();
  }

  // Stops watching the worker without ending it: its thread is going away, and Teardown() ends
  // it without running JavaScript.
  void Halt() {
    halted_ = true;
    if (handles_ != nullptr) {
      uv_poll_stop(&handles_->poll);
      uv_timer_stop(&handles_->timer);
    }
  }

  Napi::Value HaltMethod(const Napi::CallbackInfo& info) {
    Halt();
    return info.Env().Undefined();
  }

  void Schedule() {
    if (ended_ || halted_) return;
    const int wait = worker_->next_wait_ms();
    if (wait < 0) {
      uv_timer_stop(&handles_->timer);
    } else {
      uv_timer_start(&handles_->timer, OnTimer, uint64_t(wait), 0);
    }
  }

  // Hands the records to onRecords until there are none: applying decisions may produce more
  // (an upstream that could not be opened). Not re-entered from decide().
  void Deliver() {
    if (delivering_) return;
    delivering_ = true;
    for (;;) {
      Outbox::Batch batch = worker_->take_records();
      if (batch.empty()) break;
      Napi::Value answer = Call(batch);
      if (answer.IsEmpty()) break;  // an exception, now the thread's uncaught exception
      if (answer.IsArray()) {
        std::vector<Decision> decisions;
        if (!parse_decisions(answer.As<Napi::Array>(), &decisions)) {
          Napi::Error::New(env_, "onRecords(): malformed decision list")
              .ThrowAsJavaScriptException();
          Fatal();
          break;
        }
        worker_->apply(decisions);
      }
      if (ended_) break;
    }
    delivering_ = false;
  }

  // A JavaScript exception escaped the decision code (a bug there): it becomes this thread's
  // uncaught exception, which ends the thread and puts the proxy into 'error'. Raw N-API calls
  // only: while the thread is being terminated (process.exit() in it, say), every call fails,
  // and nothing here may treat that as fatal.
  void Fatal() {
    bool pending = false;
    if (napi_is_exception_pending(env_, &pending) != napi_ok || !pending) return;
    napi_value e;
    if (napi_get_and_clear_last_exception(env_, &e) != napi_ok) return;
    napi_fatal_exception(env_, e);
  }

  // The batch goes to JavaScript as onRecords(meta, addresses, headerBytes, errors): per header
  // record meta holds [id, peerPort, offset, length] (offset and length into headerBytes) and
  // addresses the peer's address. Few objects cross per record: a batch usually comes from one
  // load balancer, whose address string is made once.
  Napi::Value Call(Outbox::Batch& batch) {
    Napi::Env env = env_;
    const size_t count = batch.headers.size();
    size_t total = 0;
    for (const HeaderRecord& r : batch.headers) total += r.bytes.size();
    Napi::Float64Array meta = Napi::Float64Array::New(env, count * 4);
    Napi::Buffer<uint8_t> bytes = Napi::Buffer<uint8_t>::New(env, total);
    Napi::Array addresses = Napi::Array::New(env, count);
    double* m = meta.Data();
    size_t offset = 0;
    Napi::String last_address;
    const SockAddr* last_peer = nullptr;
    for (size_t i = 0; i < count; i++) {
      const HeaderRecord& r = batch.headers[i];
      m[4 * i] = r.id;
      m[4 * i + 1] = r.peer.port();
      m[4 * i + 2] = double(offset);
      m[4 * i + 3] = double(r.bytes.size());
      if (!r.bytes.empty()) std::memcpy(bytes.Data() + offset, r.bytes.data(), r.bytes.size());
      offset += r.bytes.size();
      if (last_peer == nullptr || !last_peer->same_ip(r.peer)) {
        last_address = Napi::String::New(env, r.peer.ip_string());
        last_peer = &r.peer;
      }
      addresses.Set(uint32_t(i), last_address);
    }
    Napi::Array errors = Napi::Array::New(env, batch.errors.size());
    for (size_t i = 0; i < batch.errors.size(); i++) {
      ErrorRecord& r = batch.errors[i];
      Napi::Array rec = Napi::Array::New(env, 7);
      rec.Set(uint32_t(0), Napi::Number::New(env, r.id));
      rec.Set(uint32_t(1), Napi::Number::New(env, r.err));
      rec.Set(uint32_t(2), Napi::String::New(env, r.syscall));
      rec.Set(uint32_t(3), Napi::String::New(env, r.source.ip_string()));
      rec.Set(uint32_t(4), Napi::Number::New(env, r.source.port()));
      rec.Set(uint32_t(5), Napi::String::New(env, r.address.ip_string()));
      rec.Set(uint32_t(6), Napi::Number::New(env, r.address.port()));
      errors.Set(uint32_t(i), rec);
    }
    napi_value args[] = {meta, addresses, bytes, errors};
    return Invoke(on_records_, args, 4);
  }

  // A callback into JavaScript as from the event loop (napi_make_callback: the microtasks it
  // queued, an async route hook's, run after it). Empty when it threw or the thread is being
  // terminated; raw N-API, so that a failure is never node-addon-api's fatal error.
  Napi::Value Invoke(Napi::FunctionReference& fn, napi_value* args, size_t count) {
    napi_value result = nullptr;
    napi_status status =
        napi_make_callback(env_, *context_, Value(), fn.Value(), count, args, &result);
    if (status != napi_ok) {
      Fatal();
      // JavaScript can no longer run here (the thread is being terminated, or the exception
      // ends it): no more rounds from this loop; the teardown hook ends the worker.
      Halt();
      return Napi::Value();
    }
    return Napi::Value(env_, result);
  }

  // The worker has ended: stop watching it, let go of it and of the engine, tell JavaScript.
  void End() {
    Detach();
    Napi::HandleScope scope(env_);
    Invoke(on_end_, nullptr, 0);
    context_.reset();
    self_.Reset();
  }

  void Detach() {
    ended_ = true;
    if (handles_ != nullptr) {
      uv_poll_stop(&handles_->poll);
      uv_timer_stop(&handles_->timer);
      auto closed = [](uv_handle_t* h) {
        auto* hs = static_cast<Handles*>(h->data);
        if (--hs->open == 0) delete hs;
      };
      uv_close(reinterpret_cast<uv_handle_t*>(&handles_->poll), closed);
      uv_close(reinterpret_cast<uv_handle_t*>(&handles_->timer), closed);
      handles_ = nullptr;
    }
    worker_->release();
    engine_->ended(index_);
    worker_ = nullptr;
    engine_.reset();
  }

  // The thread is going away (worker.terminate(), process exit, a crash) while the worker
  // runs: no JavaScript runs any more, so every connection ends now, without decisions.
  static void Teardown(void* arg) {
    auto* self = static_cast<DriverWrap*>(arg);
    self->has_cleanup_ = false;
    if (self->ended_) return;
    self->worker_->begin_close(0);
    while (self->worker_->round()) self->worker_->take_records();
    self->Detach();
  }

  // decide(decisions): answers that came later (an async route hook), applied now.
  Napi::Value Decide(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsArray()) {
      Napi::TypeError::New(env, "decide(decisions: Array)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    std::vector<Decision> decisions;
    if (!parse_decisions(info[0].As<Napi::Array>(), &decisions)) {
      Napi::TypeError::New(env, "decide(): malformed decision list").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (ended_) return env.Undefined();
    worker_->apply(decisions);
    if (!running_) {
      Deliver();
      Schedule();
    }
    return env.Undefined();
  }

  // pending(id): whether that connection or flow still waits for its decision.
  Napi::Value Pending(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const double id = info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : -1;
    return Napi::Boolean::New(env, !ended_ && id >= 0 && worker_->pending(uint64_t(id)));
  }

  Napi::Value Ref(const Napi::CallbackInfo& info) {
    if (handles_ != nullptr) {
      uv_ref(reinterpret_cast<uv_handle_t*>(&handles_->poll));
      uv_ref(reinterpret_cast<uv_handle_t*>(&handles_->timer));
    }
    return info.Env().Undefined();
  }

  Napi::Value Unref(const Napi::CallbackInfo& info) {
    if (handles_ != nullptr) {
      uv_unref(reinterpret_cast<uv_handle_t*>(&handles_->poll));
      uv_unref(reinterpret_cast<uv_handle_t*>(&handles_->timer));
    }
    return info.Env().Undefined();
  }

  napi_env env_ = nullptr;
  std::shared_ptr<Engine> engine_;
  WorkerThread* worker_ = nullptr;
  int index_ = -1;
  Handles* handles_ = nullptr;
  Napi::FunctionReference on_records_;
  Napi::FunctionReference on_end_;
  Napi::ObjectReference self_;
  std::unique_ptr<Napi::AsyncContext> context_;
  bool has_cleanup_ = false;
  bool ended_ = false;
  bool running_ = false;
  bool halted_ = false;  // by Halt(): no more rounds from this thread's loop
  bool delivering_ = false;
};

}  // namespace

void init_driver(Napi::Env env, Napi::Object exports) {
  exports.Set("Driver", DriverWrap::Define(env));
}

}  // namespace mmproxy
