// The Engine class as JavaScript sees it: construction, listen(), decide(), setAllowlist(),
// stats(), close(), and the thread-safe function that carries header batches to JavaScript.
// JavaScript thread, except the notify lambda, which worker threads call.
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
                           InstanceMethod<&EngineWrap::Decide>("decide"),
                           InstanceMethod<&EngineWrap::SetAllowlist>("setAllowlist"),
                           InstanceMethod<&EngineWrap::Stats>("stats"),
                           InstanceMethod<&EngineWrap::Close>("close"),
                           InstanceMethod<&EngineWrap::Hurry>("hurry"),
                           InstanceMethod<&EngineWrap::Ping>("ping"),
                           InstanceMethod<&EngineWrap::Ref>("ref"),
                           InstanceMethod<&EngineWrap::Unref>("unref"),
                       });
  }

  // new Engine({listen: {address, port}, listeners, workers, headerTimeoutMs, maxConnections,
  //             protocol, closeAfterMs, maxFlows, listenFds?: number[]},
  //            onBatch(meta, addresses, headerBytes, errors)), see Deliver()
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
      ListenError(env, err).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    listening_ = true;
    cleanup_ = env.AddCleanupHook(std::function<void()>([this] { engine_->close(0); }));
    has_cleanup_ = true;
    return endpoint_to_js(env, engine_->local_address());
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

  // The batch goes to JavaScript as onBatch(meta, addresses, headerBytes, errors): per header
  // record meta holds [id, peerPort, offset, length] (offset and length into headerBytes) and
  // addresses the peer's address. Few objects cross per record: a batch usually comes from one
  // load balancer, whose address string is made once.
  void Deliver(Napi::Env env, Napi::Function fn) {
    if (env == nullptr) return;
    Outbox::Batch batch = engine_->outbox().take();
    if (batch.empty()) return;
    Napi::HandleScope scope(env);
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
    fn.Call({meta, addresses, bytes, errors});
  }

  // decide(flat): one array of decisions one after the other, [id, reason] for a reject and
  // [id, -1, sourceAddress, sourcePort, targetAddress, targetPort, mark] for an admit. A list of
  // the wrong shape throws and decides nothing: lib/ builds it, so that is a bug there. An admit
  // whose addresses this parser refuses, or of two families, refuses only that connection
  // (routeRejected): lib/ checks them first, and one answer it let through must not stall the
  // whole batch.
  Napi::Value Decide(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsArray()) {
      Napi::TypeError::New(env, "decide(decisions: Array)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Array list = info[0].As<Napi::Array>();
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
    std::vector<Decision> out;
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
      out.push_back(std::move(d));
    }
    if (bad || i != length) {
      Napi::TypeError::New(env, "decide(): malformed decision list").ThrowAsJavaScriptException();
      return env.Undefined();
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
    // Node frees the function on a later turn of the loop: nothing may touch it from now on.
    released_ = true;
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

  Napi::Value Ref(const Napi::CallbackInfo& info) {
    if (listening_ && !released_) tsfn_.Ref(info.Env());
    return info.Env().Undefined();
  }

  Napi::Value Unref(const Napi::CallbackInfo& info) {
    if (listening_ && !released_) tsfn_.Unref(info.Env());
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
  bool released_ = false;  // by Stopped(); after it, ref() and unref() do nothing
};

}  // namespace

void init_engine(Napi::Env env, Napi::Object exports) {
  exports.Set("Engine", EngineWrap::Define(env));
}

}  // namespace mmproxy
