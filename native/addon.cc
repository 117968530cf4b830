// N-API entry point: module registration and the per-environment Addon state.
// Runs on the JavaScript thread only.
#include <napi.h>

#include <string>
#include <vector>

#include "binding.h"
#include "local_table.h"
#include "probe.h"

namespace mmproxy {

namespace {

constexpr int kInterfaceVersion = 4;

Napi::Value ProbeTransparent(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int family = info[0].As<Napi::Number>().Int32Value() == 6 ? 6 : 4;
  ProbeResult r = probe_transparent(family);
  Napi::Object out = Napi::Object::New(env);
  out.Set("ok", Napi::Boolean::New(env, r.err == 0));
  if (r.err != 0) {
    out.Set("errno", Napi::Number::New(env, r.err));
    out.Set("syscall", Napi::String::New(env, r.syscall));
  }
  return out;
}

// localTable() → { prefixes: ["127.0.0.0/8", "192.0.2.1/32", ...], routesRead }: the kernel's
// local table; throws a system error when netlink cannot be read.
Napi::Value ReadLocalTable(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  mmproxy::LocalTable table;
  int err = 0;
  const char* syscall = "";
  if (!dump_local_table(&table, &err, &syscall)) {
    system_error(env, err, syscall).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Array prefixes = Napi::Array::New(env, table.prefixes.size());
  for (size_t i = 0; i < table.prefixes.size(); i++) prefixes.Set(uint32_t(i), table.prefixes[i]);
  Napi::Object out = Napi::Object::New(env);
  out.Set("prefixes", prefixes);
  out.Set("routesRead", Napi::Number::New(env, table.routes_read));
  return out;
}

// new LocalTableWatch(): a netlink socket subscribed to address and route changes.
// changed() → whether any arrived since the last call; close() closes the socket (also done
// when the object is collected).
class LocalTableWatchWrap : public Napi::ObjectWrap<LocalTableWatchWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "LocalTableWatch",
                       {InstanceMethod<&LocalTableWatchWrap::Changed>("changed"),
                        InstanceMethod<&LocalTableWatchWrap::Close>("close")});
  }
  explicit LocalTableWatchWrap(const Napi::CallbackInfo& info)
      : Napi::ObjectWrap<LocalTableWatchWrap>(info) {
    int err = 0;
    const char* syscall = "";
    if (!watch_.open(&err, &syscall))
      system_error(info.Env(), err, syscall).ThrowAsJavaScriptException();
  }

 private:
  Napi::Value Changed(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), watch_.changed());
  }
  Napi::Value Close(const Napi::CallbackInfo& info) {
    watch_.close();
    return info.Env().Undefined();
  }
  LocalTableWatch watch_;
};

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  // lib/native.ts refuses an addon whose interface version it does not know.
  exports.Set("interfaceVersion", Napi::Number::New(env, kInterfaceVersion));
  exports.Set("probeTransparent", Napi::Function::New(env, ProbeTransparent, "probeTransparent"));
  exports.Set("localTable", Napi::Function::New(env, ReadLocalTable, "localTable"));
  exports.Set("LocalTableWatch", LocalTableWatchWrap::Define(env));
  init_engine(env, exports);
  init_driver(env, exports);
  init_connect_check(env, exports);
  init_systemd_notify(env, exports);
  return exports;
}

}  // namespace mmproxy

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  return mmproxy::Init(env, exports);
}

NODE_API_MODULE(mmproxy_native, InitModule)
