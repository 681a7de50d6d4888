;; tap.wat: relays every inbound operation to the host, so tests can observe what a provider
;; delivers to an actor (MessageSubscriber.HandleMessage, ChunkReceiver.ReceiveChunk,
;; HttpServer.HandleRequest, ...).
;;
;;   inbound (op, payload) -> __host_call("default", "lattice:tap", op, payload)
;;   success: the host response becomes our response (return 1)
;;   failure: the host error text becomes our guest error (return 0)
;;
;; Sign it with caps including "lattice:tap" and link it to a provider of that contract (the
;; tests' TapProvider, which records deliveries and answers with a configured reply).
(module
  (import "wasmbus" "__guest_request"     (func $guest_request     (param i32 i32)))
  (import "wasmbus" "__guest_response"    (func $guest_response    (param i32 i32)))
  (import "wasmbus" "__guest_error"       (func $guest_error       (param i32 i32)))
  (import "wasmbus" "__host_call"
    (func $host_call (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasmbus" "__host_response_len" (func $host_response_len (result i32)))
  (import "wasmbus" "__host_response"     (func $host_response     (param i32)))
  (import "wasmbus" "__host_error_len"    (func $host_error_len    (result i32)))
  (import "wasmbus" "__host_error"        (func $host_error        (param i32)))

  (memory (export "memory") 1)

  (data (i32.const 0)  "default")        ;; 7
  (data (i32.const 16) "lattice:tap")    ;; 11
  (data (i32.const 32) "tap: out of memory")  ;; 18

  (global $heap (mut i32) (i32.const 1024))

  ;; Bump allocator: a pointer to $n fresh bytes, or -1 when memory cannot grow that far.
  (func $alloc (param $n i32) (result i32)
    (local $ptr i32) (local $end i64) (local $have i64)
    (local.set $ptr (global.get $heap))
    (local.set $end (i64.add (i64.extend_i32_u (local.get $ptr)) (i64.extend_i32_u (local.get $n))))
    (local.set $have (i64.shl (i64.extend_i32_u (memory.size)) (i64.const 16)))
    (if (i64.gt_u (local.get $end) (local.get $have))
      (then
        (if (i32.eq
              (memory.grow (i32.wrap_i64 (i64.shr_u
                (i64.add (i64.sub (local.get $end) (local.get $have)) (i64.const 0xffff))
                (i64.const 16))))
              (i32.const -1))
          (then (return (i32.const -1))))))
    (global.set $heap (i32.wrap_i64 (local.get $end)))
    (local.get $ptr))

  (func (export "__guest_call") (param $op_len i32) (param $msg_len i32) (result i32)
    (local $op i32) (local $msg i32) (local $len i32) (local $buf i32)
    (global.set $heap (i32.const 1024))  ;; nothing survives a call
    (local.set $op (call $alloc (local.get $op_len)))
    (local.set $msg (call $alloc (local.get $msg_len)))
    (if (i32.or (i32.eq (local.get $op) (i32.const -1)) (i32.eq (local.get $msg) (i32.const -1)))
      (then (call $guest_error (i32.const 32) (i32.const 18)) (return (i32.const 0))))
    (call $guest_request (local.get $op) (local.get $msg))
    (if (i32.eq (call $host_call
                  (i32.const 0) (i32.const 7) (i32.const 16) (i32.const 11)
                  (local.get $op) (local.get $op_len) (local.get $msg) (local.get $msg_len))
                (i32.const 1))
      (then
        (local.set $len (call $host_response_len))
        (local.set $buf (call $alloc (local.get $len)))
        (if (i32.eq (local.get $buf) (i32.const -1))
          (then (call $guest_error (i32.const 32) (i32.const 18)) (return (i32.const 0))))
        (call $host_response (local.get $buf))
        (call $guest_response (local.get $buf) (local.get $len))
        (return (i32.const 1))))
    (local.set $len (call $host_error_len))
    (local.set $buf (call $alloc (local.get $len)))
    (if (i32.eq (local.get $buf) (i32.const -1))
      (then (call $guest_error (i32.const 32) (i32.const 18)) (return (i32.const 0))))
    (call $host_error (local.get $buf))
    (call $guest_error (local.get $buf) (local.get $len))
    (i32.const 0)))
