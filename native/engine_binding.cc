// The Engine class as JavaScript sees it: construction, listen(), decide(), setAllowlist(),
// stats(), close(), and the thread-safe function that carries header batches to JavaScript.
// JavaScript thread, except the notify lambda, which worker threads call.
#include <napi.h>

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
                           InstanceMethod<&EngineWrap::Decide>("decide"),
                           InstanceMethod<&EngineWrap::SetAllowlist>("setAllowlist"),
                           InstanceMethod<&EngineWrap::Stats>("stats"),
                           InstanceMethod<&EngineWrap::Close>("close"),
                           InstanceMethod<&EngineWrap::Hurry>("hurry"),
                           InstanceMethod<&EngineWrap::Ref>("ref"),
                           InstanceMethod<&EngineWrap::Unref>("unref"),
                       });
  }

  // new Engine({listen: {address, port}, listeners, workers, headerTimeoutMs, maxConnections},
  //            onBatch(headers, errors))
  EngineWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<EngineWrap>(info) {
    Napi::Env env = info.Env();
    if (!info[0].IsObject() || !info[1].IsFunction()) {
      Napi::TypeError::New(env, "Engine(config, onBatch)").ThrowAsJavaScriptException();
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
    if (config.listeners < 1 || config.workers < 1) {
      Napi::RangeError::New(env, "listeners and workers must be at least 1")
          .ThrowAsJavaScriptException();
      return;
    }
    engine_ = std::make_unique<Engine>(config);
    on_batch_ = Napi::Persistent(info[1].As<Napi::Function>());
  }

  ~EngineWrap() override {
    // Only reached once the engine stopped: while it runs, self_ keeps this object alive.
    if (engine_) engine_->close(0);
  }

 private:
  Napi::Value Listen(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (listening_ || closing_) {
      Napi::Error::New(env, "Engine.listen() may be called once").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    // Held until the thread-safe function's finalizer runs, which touches this object: also
    // when listen() fails below and the function is released at once.
    self_ = Napi::Persistent(Value());
    tsfn_ = Napi::ThreadSafeFunction::New(env, on_batch_.Value(), "mmproxy-native engine", 0, 1,
                                          [this](Napi::Env) { self_.Reset(); });
    engine_->outbox().set_notify([this] {
      // Worker thread: at most one call per batch; the batch is taken when the call runs.
      tsfn_.NonBlockingCall([this](Napi::Env env, Napi::Function fn) { Deliver(env, fn); });
    });
    SocketError err;
    if (engine_->listen(&err) != 0) {
      tsfn_.Release();
      system_error(env, err.err, err.syscall, &engine_->config().listen)
          .ThrowAsJavaScriptException();
      return env.Undefined();
    }
    listening_ = true;
    cleanup_ = env.AddCleanupHook(std::function<void()>([this] { engine_->close(0); }));
    has_cleanup_ = true;
    return endpoint_to_js(env, engine_->local_address());
  }

  void Deliver(Napi::Env env, Napi::Function fn) {
    if (env == nullptr) return;
    Outbox::Batch batch = engine_->outbox().take();
    if (batch.empty()) return;
    Napi::HandleScope scope(env);
    Napi::Array headers = Napi::Array::New(env, batch.headers.size());
    for (size_t i = 0; i < batch.headers.size(); i++) {
      HeaderRecord& r = batch.headers[i];
      Napi::Array rec = Napi::Array::New(env, 6);
      rec.Set(uint32_t(0), Napi::Number::New(env, r.id));
      rec.Set(uint32_t(1), Napi::String::New(env, r.peer.ip_string()));
      rec.Set(uint32_t(2), Napi::Number::New(env, r.peer.port()));
      rec.Set(uint32_t(3), Napi::String::New(env, r.local.ip_string()));
      rec.Set(uint32_t(4), Napi::Number::New(env, r.local.port()));
      rec.Set(uint32_t(5), Napi::Buffer<uint8_t>::Copy(env, r.bytes.data(), r.bytes.size()));
      headers.Set(uint32_t(i), rec);
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
    fn.Call({headers, errors});
  }

  // decide([[id, reason]] for rejects, [id, -1, srcAddr, srcPort, dstAddr, dstPort, mark] admits)
  Napi::Value Decide(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsArray()) {
      Napi::TypeError::New(env, "decide(decisions: Array)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Array list = info[0].As<Napi::Array>();
    std::vector<Decision> out;
    out.reserve(list.Length());
    for (uint32_t i = 0; i < list.Length(); i++) {
      Napi::Array rec = list.Get(i).As<Napi::Array>();
      Decision d;
      d.id = uint64_t(rec.Get(uint32_t(0)).As<Napi::Number>().DoubleValue());
      int reason = rec.Get(uint32_t(1)).As<Napi::Number>().Int32Value();
      if (reason >= 0) {
        d.admit = false;
        d.reason = reason;
      } else {
        d.admit = true;
        std::string src = rec.Get(uint32_t(2)).As<Napi::String>().Utf8Value();
        uint32_t src_port = rec.Get(uint32_t(3)).As<Napi::Number>().Uint32Value();
        std::string dst = rec.Get(uint32_t(4)).As<Napi::String>().Utf8Value();
        uint32_t dst_port = rec.Get(uint32_t(5)).As<Napi::Number>().Uint32Value();
        d.mark = rec.Get(uint32_t(6)).As<Napi::Number>().Uint32Value();
        if (src_port > 65535 || dst_port > 65535 ||
            !SockAddr::parse(src.c_str(), uint16_t(src_port), &d.source) ||
            !SockAddr::parse(dst.c_str(), uint16_t(dst_port), &d.target)) {
          Napi::TypeError::New(env, "decide(): bad address in decision for " + src + " -> " + dst)
              .ThrowAsJavaScriptException();
          return env.Undefined();
        }
      }
      out.push_back(std::move(d));
    }
    engine_->decide(std::move(out));
    return env.Undefined();
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

  // Joins the workers on a libuv pool thread, so the JS thread never waits for them.
  class CloseWorker : public Napi::AsyncWorker {
   public:
    CloseWorker(Napi::Env env, EngineWrap* wrap, int64_t deadline)
        : Napi::AsyncWorker(env), wrap_(wrap), deadline_(deadline), deferred_(env) {}
    void Execute() override { wrap_->engine_->close(deadline_); }
    void OnOK() override {
      wrap_->Stopped(Env());
      deferred_.Resolve(Env().Undefined());
    }
    Napi::Promise Promise() { return deferred_.Promise(); }

   private:
    EngineWrap* wrap_;
    int64_t deadline_;
    Napi::Promise::Deferred deferred_;
  };

  // close(drainMs) → Promise<void>: stop accepting now, drain until drainMs, join the workers.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    double drain = info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : 0;
    if (!listening_ || closing_) {
      auto d = Napi::Promise::Deferred::New(env);
      d.Resolve(env.Undefined());
      return d.Promise();
    }
    closing_ = true;
    auto* w = new CloseWorker(env, this, monotonic_ms() + int64_t(drain < 0 ? 0 : drain));
    Napi::Promise p = w->Promise();
    w->Queue();
    return p;
  }

  void Stopped(Napi::Env env) {
    if (has_cleanup_) {
      cleanup_.Remove(env);
      has_cleanup_ = false;
    }
    tsfn_.Release();  // queued batches still run; the finalizer then drops self_
  }

  Napi::Value Hurry(const Napi::CallbackInfo& info) {
    engine_->hurry();
    return info.Env().Undefined();
  }

  Napi::Value Ref(const Napi::CallbackInfo& info) {
    if (listening_) tsfn_.Ref(info.Env());
    return info.Env().Undefined();
  }

  Napi::Value Unref(const Napi::CallbackInfo& info) {
    if (listening_) tsfn_.Unref(info.Env());
    return info.Env().Undefined();
  }

  std::unique_ptr<Engine> engine_;
  Napi::FunctionReference on_batch_;
  Napi::ThreadSafeFunction tsfn_;
  Napi::ObjectReference self_;
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
