;; wasi.wat: a wasmbus actor that also imports WASI (like a wasm32-wasi build of an actor).
;;
;;   Hello -> writes "hello from wasi\n" to stdout (fd 1) and "oops from wasi\n" to stderr
;;            (fd 2) with fd_write, then answers "ok"; a host should capture both into its log
;;            and never let them reach its own stdout
;;   Args  -> answers the argv buffer as WASI gives it (NUL-terminated strings)
;;   Env   -> answers the environment buffer (NUL-terminated "K=V" strings)
;;   other -> guest error "unknown operation"
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get"
    (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get"
    (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get"
    (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get"
    (func $environ_get (param i32 i32) (result i32)))
  (import "wasmbus" "__guest_request"  (func $guest_request  (param i32 i32)))
  (import "wasmbus" "__guest_response" (func $guest_response (param i32 i32)))
  (import "wasmbus" "__guest_error"    (func $guest_error    (param i32 i32)))

  (memory (export "memory") 2)

  (data (i32.const 16)  "Hello")              ;; 5
  (data (i32.const 24)  "Args")               ;; 4
  (data (i32.const 32)  "Env")                ;; 3
  (data (i32.const 40)  "ok")                 ;; 2
  (data (i32.const 48)  "hello from wasi\n")   ;; 16
  (data (i32.const 64)  "oops from wasi\n")    ;; 15
  (data (i32.const 80)  "unknown operation")  ;; 17
  ;; scratch: 128 iovec (ptr, len), 136 count/nwritten, 140 size,
  ;; 1024.. request, 65536.. pointer array, 98304.. string buffer

  ;; Request buffers start at 1024 (operation, then payload); grow memory to fit them.
  (func $receive (param $op_len i32) (param $len i32)
    (local $need i64)
    (local.set $need (i64.add (i64.const 1024)
      (i64.add (i64.extend_i32_u (local.get $op_len)) (i64.extend_i32_u (local.get $len)))))
    (if (i64.gt_u (local.get $need) (i64.const 65536))
      (then (unreachable)))   ;; this test actor only takes small requests
    (call $guest_request (i32.const 1024) (i32.add (i32.const 1024) (local.get $op_len))))

  (func $is (param $op_len i32) (param $c i32) (param $cn i32) (result i32)
    (local $i i32)
    (if (i32.ne (local.get $op_len) (local.get $cn)) (then (return (i32.const 0))))
    (loop $each
      (if (i32.lt_u (local.get $i) (local.get $cn))
        (then
          (if (i32.ne (i32.load8_u (i32.add (i32.const 1024) (local.get $i)))
                      (i32.load8_u (i32.add (local.get $c) (local.get $i))))
            (then (return (i32.const 0))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $each))))
    (i32.const 1))

  (func $write (param $fd i32) (param $p i32) (param $n i32)
    (i32.store (i32.const 128) (local.get $p))
    (i32.store (i32.const 132) (local.get $n))
    (drop (call $fd_write (local.get $fd) (i32.const 128) (i32.const 1) (i32.const 136))))

  (func (export "__guest_call") (param $op_len i32) (param $len i32) (result i32)
    (call $receive (local.get $op_len) (local.get $len))
    (if (call $is (local.get $op_len) (i32.const 16) (i32.const 5))
      (then
        (call $write (i32.const 1) (i32.const 48) (i32.const 16))
        (call $write (i32.const 2) (i32.const 64) (i32.const 15))
        (call $guest_response (i32.const 40) (i32.const 2))
        (return (i32.const 1))))
    (if (call $is (local.get $op_len) (i32.const 24) (i32.const 4))
      (then
        (drop (call $args_sizes_get (i32.const 136) (i32.const 140)))
        (if (i32.gt_u (i32.load (i32.const 140)) (i32.const 32768)) (then (unreachable)))
        (if (i32.gt_u (i32.load (i32.const 136)) (i32.const 8192)) (then (unreachable)))
        (drop (call $args_get (i32.const 65536) (i32.const 98304)))
        (call $guest_response (i32.const 98304) (i32.load (i32.const 140)))
        (return (i32.const 1))))
    (if (call $is (local.get $op_len) (i32.const 32) (i32.const 3))
      (then
        (drop (call $environ_sizes_get (i32.const 136) (i32.const 140)))
        (if (i32.gt_u (i32.load (i32.const 140)) (i32.const 32768)) (then (unreachable)))
        (if (i32.gt_u (i32.load (i32.const 136)) (i32.const 8192)) (then (unreachable)))
        (drop (call $environ_get (i32.const 65536) (i32.const 98304)))
        (call $guest_response (i32.const 98304) (i32.load (i32.const 140)))
        (return (i32.const 1))))
    (call $guest_error (i32.const 80) (i32.const 17))
    (i32.const 0))
)
