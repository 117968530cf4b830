// The N-API surface: the Engine and Driver classes, connectFrom() and notify(). Only binding files
// include <napi.h>. JavaScript thread only, except where a comment says otherwise.
#pragma once

#include <napi.h>

#include <string>

#include "sock_addr.h"

namespace mmproxy {

// A JS Error carrying errno (positive), syscall and, when given, address and port; lib/errors.ts
// turns it into a Node-shaped system error.
Napi::Error system_error(Napi::Env env, int err, const std::string& syscall,
                         const SockAddr* address = nullptr);
// {address, port} → SockAddr; throws a TypeError naming `what` when malformed.
bool endpoint_from_js(Napi::Env env, Napi::Value v, const char* what, SockAddr* out);
Napi::Object endpoint_to_js(Napi::Env env, const SockAddr& a);

void init_engine(Napi::Env env, Napi::Object exports);
void init_driver(Napi::Env env, Napi::Object exports);
void init_connect_check(Napi::Env env, Napi::Object exports);
void init_systemd_notify(Napi::Env env, Napi::Object exports);

}  // namespace mmproxy
