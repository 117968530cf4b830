// Conversions shared by the binding files, connectFrom() and notify(). JavaScript thread, except
// ConnectWorker::Execute, which runs on a libuv pool thread.
#include "binding.h"

#include <cstring>

#include "connect_check.h"
#include "systemd_notify.h"

namespace mmproxy {

Napi::Error system_error(Napi::Env env, int err, const std::string& syscall,
                         const SockAddr* address) {
  Napi::Error e = Napi::Error::New(env, syscall + " failed: " + std::strerror(err));
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("syscall", Napi::String::New(env, syscall));
  if (address != nullptr && address->family() != 0) {
    e.Set("address", Napi::String::New(env, address->ip_string()));
    e.Set("port", Napi::Number::New(env, address->port()));
  }
  return e;
}

bool endpoint_from_js(Napi::Env env, Napi::Value v, const char* what, SockAddr* out) {
  if (v.IsObject()) {
    Napi::Object o = v.As<Napi::Object>();
    Napi::Value a = o.Get("address"), p = o.Get("port");
    if (a.IsString() && p.IsNumber()) {
      double port = p.As<Napi::Number>().DoubleValue();
      if (port >= 0 && port <= 65535 &&
          SockAddr::parse(a.As<Napi::String>().Utf8Value().c_str(), uint16_t(port), out))
        return true;
    }
  }
  Napi::TypeError::New(env, std::string(what) + " must be {address, port} with a literal address")
      .ThrowAsJavaScriptException();
  return false;
}

Napi::Object endpoint_to_js(Napi::Env env, const SockAddr& a) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("address", Napi::String::New(env, a.ip_string()));
  o.Set("port", Napi::Number::New(env, a.port()));
  o.Set("family", Napi::String::New(env, a.family() == AF_INET6 ? "IPv6" : "IPv4"));
  return o;
}

namespace {

class ConnectWorker : public Napi::AsyncWorker {
 public:
  ConnectWorker(Napi::Env env, bool has_source, SockAddr source, SockAddr target, uint32_t mark,
                int timeout_ms)
      : Napi::AsyncWorker(env),
        has_source_(has_source),
        source_(source),
        target_(target),
        mark_(mark),
        timeout_ms_(timeout_ms),
        deferred_(env) {}
  void Execute() override {
    connect_from(has_source_ ? &source_ : nullptr, target_, mark_, timeout_ms_, &err_);
  }
  void OnOK() override {
    Napi::Env env = Env();
    Napi::Object r = Napi::Object::New(env);
    r.Set("ok", Napi::Boolean::New(env, err_.err == 0));
    if (err_.err != 0) {
      r.Set("errno", Napi::Number::New(env, err_.err));
      r.Set("syscall", Napi::String::New(env, err_.syscall));
    }
    deferred_.Resolve(r);
  }
  Napi::Promise Promise() { return deferred_.Promise(); }

 private:
  bool has_source_;
  SockAddr source_, target_;
  uint32_t mark_;
  int timeout_ms_;
  SocketError err_;
  Napi::Promise::Deferred deferred_;
};

// connectFrom(source: {address, port} | null, target: {address, port}, mark, timeoutMs)
//   → Promise<{ok, errno?, syscall?}>
Napi::Value ConnectFrom(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  SockAddr source, target;
  bool has_source = !info[0].IsNull() && !info[0].IsUndefined();
  if (has_source && !endpoint_from_js(env, info[0], "source", &source)) return env.Undefined();
  if (!endpoint_from_js(env, info[1], "target", &target)) return env.Undefined();
  uint32_t mark = info[2].IsNumber() ? info[2].As<Napi::Number>().Uint32Value() : 0;
  int timeout = info[3].IsNumber() ? info[3].As<Napi::Number>().Int32Value() : 2000;
  auto* w = new ConnectWorker(env, has_source, source, target, mark, timeout);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// notify(socketPath: string, message: string) → {ok, errno?, syscall?}: one datagram to
// systemd's notification socket, without blocking (a full queue is errno EAGAIN).
Napi::Value Notify(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString() || !info[1].IsString()) {
    Napi::TypeError::New(env, "notify(socketPath: string, message: string)")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string syscall;
  const int r = send_notification(info[0].As<Napi::String>().Utf8Value(),
                                  info[1].As<Napi::String>().Utf8Value(), &syscall);
  Napi::Object out = Napi::Object::New(env);
  out.Set("ok", Napi::Boolean::New(env, r == 0));
  if (r != 0) {
    out.Set("errno", Napi::Number::New(env, -r));
    out.Set("syscall", Napi::String::New(env, syscall));
  }
  return out;
}

}  // namespace

void init_connect_check(Napi::Env env, Napi::Object exports) {
  exports.Set("connectFrom", Napi::Function::New(env, ConnectFrom, "connectFrom"));
}

void init_systemd_notify(Napi::Env env, Napi::Object exports) {
  exports.Set("notify", Napi::Function::New(env, Notify, "notify"));
}

}  // namespace mmproxy
