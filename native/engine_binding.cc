// The Engine class as JavaScript sees it: construction, listen(), setAllowlist(), stats(),
// close() and hurry(). The workers it prepares are driven by Driver objects (worker_binding.cc),
// one per JavaScript thread, which find the engine by the id listen() returns. JS thread.
#include <napi.h>

#include <cmath>
#include <cstring>
#include <memory>

#include "binding.h"
#include "engine.h"

namespace mmproxy {

namespace {

class EngineWrap : public Napi::ObjectWrap<EngineWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Engine",
                       {
                           InstanceMethod<&EngineWrap::Listen>("listen"),
                           InstanceMethod<&EngineWrap::SetAllowlist>("setAllowlist"),
                           InstanceMethod<&EngineWrap::Stats>("stats"),
                           InstanceMethod<&EngineWrap::Close>("close"),
                           InstanceMethod<&EngineWrap::Hurry>("hurry"),
                           InstanceMethod<&EngineWrap::Ping>("ping"),
                       });
  }

  // new Engine({listen: {address, port}, listeners, workers, headerTimeoutMs, maxConnections,
  //             protocol, closeAfterMs, maxFlows, listenFds?: number[]})
  EngineWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<EngineWrap>(info) {
    Napi::Env env = info.Env();
    if (!info[0].IsObject()) {
      Napi::TypeError::New(env, "Engine(config)").ThrowAsJavaScriptException();
      return;
    }
    Napi::Object c = info[0].As<Napi::Object>();
    EngineConfig config;
    if (!endpoint_from_js(env, c.Get("listen"), "listen", &config.listen)) return;
    config.listeners = c.Get("listeners").As<Napi::Number>().Int32Value();
    config.workers = c.Get("workers").As<Napi::Number>().Int32Value();
    config.header_timeout_ms = c.Get("headerTimeoutMs").As<Napi::Number>().Int64Value();
    config.max_connections = c.Get("maxConnections").As<Napi::Number>().Int64Value();
    if (c.Get("protocol").IsString() && c.Get("protocol").As<Napi::String>().Utf8Value() == "udp")
      config.type = SOCK_DGRAM;
    if (c.Get("closeAfterMs").IsNumber())
      config.close_after_ms = c.Get("closeAfterMs").As<Napi::Number>().Int64Value();
    if (c.Get("maxFlows").IsNumber())
      config.max_flows = c.Get("maxFlows").As<Napi::Number>().Int64Value();
    Napi::Value fds = c.Get("listenFds");
    if (fds.IsArray()) {
      Napi::Array list = fds.As<Napi::Array>();
      for (uint32_t i = 0; i < list.Length(); i++) {
        Napi::Value v = list.Get(i);
        const double fd = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
        bool repeated = false;
        for (int seen : config.listen_fds) repeated = repeated || seen == fd;
        if (!(fd >= 0 && fd <= 2147483647.0) || fd != std::floor(fd) || repeated) {
          Napi::TypeError::New(env, "listenFds must be distinct file descriptor numbers")
              .ThrowAsJavaScriptException();
          return;
        }
        config.listen_fds.push_back(int(fd));
      }
    }
    if (config.listeners < 1 || config.workers < 1) {
      Napi::RangeError::New(env, "listeners and workers must be at least 1")
          .ThrowAsJavaScriptException();
      return;
    }
    engine_ = std::make_shared<Engine>(config);
  }

  ~EngineWrap() override {
    if (id_ != 0) unregister_engine(id_);
    if (has_cleanup_) cleanup_.Remove(Env());
    // Workers still attached hold the engine; they end when their thread does.
    if (engine_) engine_->hurry();
  }

 private:
  // listen() → {address, port, family, id, workers}: the first listener's address, the id by
  // which Driver objects find this engine, and how many workers they are to attach.
  Napi::Value Listen(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (listening_ || closing_) {
      Napi::Error::New(env, "Engine.listen() may be called once").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    SocketError err;
    if (engine_->listen(&err) != 0) {
      ListenError(env, err).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    listening_ = true;
    id_ = register_engine(engine_);
    // At exit, worker threads are stopped (which ends their workers) before this runs.
    cleanup_ = env.AddCleanupHook(std::function<void()>([this] {
      // node-addon-api frees the hook once it has run: it must not be removed again.
      has_cleanup_ = false;
      engine_->hurry();
    }));
    has_cleanup_ = true;
    Napi::Object o = endpoint_to_js(env, engine_->local_address());
    o.Set("id", Napi::Number::New(env, id_));
    o.Set("workers", Napi::Number::New(env, engine_->worker_count()));
    return o;
  }

  // A passed socket of the wrong kind is an Error with listenFd, found and expected (no errno:
  // lib/ makes it a ListenFdError); anything else a system error, with the listening address
  // when the engine opened the sockets itself.
  Napi::Error ListenError(Napi::Env env, const SocketError& err) {
    const EngineConfig& config = engine_->config();
    if (err.fd >= 0 && !err.found.empty()) {
      const char* expected = expected_listener(config.type);
      Napi::Error e = Napi::Error::New(
          env, "listen fd " + std::to_string(err.fd) + " is " + err.found + ", not " + expected);
      e.Set("listenFd", Napi::Number::New(env, err.fd));
      e.Set("found", Napi::String::New(env, err.found));
      e.Set("expected", Napi::String::New(env, expected));
      return e;
    }
    return system_error(env, err.err, err.syscall,
                        config.listen_fds.empty() ? &config.listen : nullptr);
  }

  Napi::Value SetAllowlist(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info[0].IsNull() || info[0].IsUndefined()) {
      engine_->set_allowlist(nullptr);
      return env.Undefined();
    }
    if (!info[0].IsTypedArray()) {
      Napi::TypeError::New(env, "setAllowlist(table: Uint8Array | null)")
          .ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Uint8Array bytes = info[0].As<Napi::Uint8Array>();
    auto table = AllowTable::parse(bytes.Data(), bytes.ByteLength());
    if (!table) {
      Napi::TypeError::New(env, "setAllowlist(): not a compiled allowlist")
          .ThrowAsJavaScriptException();
      return env.Undefined();
    }
    engine_->set_allowlist(std::move(table));
    return env.Undefined();
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Counters c;
    engine_->stats(&c);
    auto num = [&](const std::atomic<uint64_t>& v) {
      return Napi::Number::New(env, double(v.load()));
    };
    Napi::Object o = Napi::Object::New(env);
    o.Set("accepted", num(c.accepted));
    o.Set("active", Napi::Number::New(env, double(c.active.load())));
    o.Set("admitted", num(c.admitted));
    Napi::Object rejected = Napi::Object::New(env);
    for (int r = 0; r < kRejectReasonCount; r++)
      rejected.Set(kRejectReasonNames[r], num(c.rejected[r]));
    o.Set("rejected", rejected);
    o.Set("upstreamFailures", num(c.upstream_failures));
    o.Set("ephemeralPortRetries", num(c.ephemeral_port_retries));
    o.Set("bytesFromClients", num(c.bytes_from_clients));
    o.Set("bytesFromUpstreams", num(c.bytes_from_upstreams));
    o.Set("acceptErrors", num(c.accept_errors));
    o.Set("decisionWaitUs", num(c.decision_wait_us));
    o.Set("decisions", num(c.decisions));
    Napi::Object udp = Napi::Object::New(env);
    udp.Set("datagramsFromClients", num(c.datagrams_from_clients));
    udp.Set("datagramsToUpstreams", num(c.datagrams_to_upstreams));
    udp.Set("datagramsFromUpstreams", num(c.datagrams_from_upstreams));
    udp.Set("datagramsToClients", num(c.datagrams_to_clients));
    udp.Set("datagramsDropped", num(c.datagrams_dropped));
    udp.Set("flowTableFull", num(c.flow_table_full));
    udp.Set("icmpErrors", num(c.icmp_errors));
    udp.Set("flowsExpired", num(c.flows_expired));
    o.Set("udp", udp);
    return o;
  }

  // Waits for the workers on a libuv pool thread, so the JS thread never waits for them.
  class CloseWorker : public Napi::AsyncWorker {
   public:
    CloseWorker(Napi::Env env, std::shared_ptr<Engine> engine, int64_t deadline)
        : Napi::AsyncWorker(env), engine_(std::move(engine)), deadline_(deadline), deferred_(env) {}
    void Execute() override { engine_->close(deadline_); }
    void OnOK() override { deferred_.Resolve(Env().Undefined()); }
    Napi::Promise Promise() { return deferred_.Promise(); }

   private:
    std::shared_ptr<Engine> engine_;
    int64_t deadline_;
    Napi::Promise::Deferred deferred_;
  };

  // close(drainMs) → Promise<void>: stop accepting now, drain until drainMs, and resolve once
  // every worker has ended.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    double drain = info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : 0;
    if (!listening_ || closing_) {
      auto d = Napi::Promise::Deferred::New(env);
      d.Resolve(env.Undefined());
      return d.Promise();
    }
    closing_ = true;
    unregister_engine(id_);
    id_ = 0;
    if (has_cleanup_) {
      cleanup_.Remove(env);
      has_cleanup_ = false;
    }
    auto* w = new CloseWorker(env, engine_, monotonic_ms() + int64_t(drain < 0 ? 0 : drain));
    Napi::Promise p = w->Promise();
    w->Queue();
    return p;
  }

  // ping() → whether every worker answered the previous ping; sends the next (Engine::ping).
  Napi::Value Ping(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return Napi::Boolean::New(env, listening_ && !closing_ && engine_->ping());
  }

  Napi::Value Hurry(const Napi::CallbackInfo& info) {
    engine_->hurry();
    return info.Env().Undefined();
  }

  std::shared_ptr<Engine> engine_;
  uint32_t id_ = 0;  // in the registry while listening and not closing
  Napi::Env::CleanupHook<std::function<void()>> cleanup_;
  bool has_cleanup_ = false;
  bool listening_ = false;
  bool closing_ = false;
};

}  // namespace

void init_engine(Napi::Env env, Napi::Object exports) {
  exports.Set("Engine", EngineWrap::Define(env));
}

}  // namespace mmproxy
