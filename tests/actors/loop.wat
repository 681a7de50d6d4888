;; loop.wat: never returns from a guest call, to prove the runtime's deadline.
;;
;;   Ping      -> "pong" (so the same Actor can be shown to keep serving after a timeout)
;;   Loop      -> spins forever in pure wasm (no host calls: only an engine-level interrupt
;;                such as epoch interruption or fuel can stop it)
;;   LoopHost  -> spins forever calling the cheap host import __host_response_len
;;   other     -> guest error "unknown operation"
(module
  (import "wasmbus" "__guest_request"     (func $guest_request     (param i32 i32)))
  (import "wasmbus" "__guest_response"    (func $guest_response    (param i32 i32)))
  (import "wasmbus" "__guest_error"       (func $guest_error       (param i32 i32)))
  (import "wasmbus" "__host_response_len" (func $host_response_len (result i32)))

  (memory (export "memory") 1)

  (data (i32.const 16) "Ping")               ;; 4
  (data (i32.const 24) "pong")               ;; 4
  (data (i32.const 32) "Loop")               ;; 4
  (data (i32.const 40) "LoopHost")           ;; 8
  (data (i32.const 48) "unknown operation")  ;; 17

  ;; Request buffers start at 1024 (operation, then payload); grow memory to fit them.
  (func $receive (param $op_len i32) (param $len i32)
    (local $need i64)
    (local.set $need (i64.add (i64.const 1024)
      (i64.add (i64.extend_i32_u (local.get $op_len)) (i64.extend_i32_u (local.get $len)))))
    (if (i64.gt_u (local.get $need) (i64.shl (i64.extend_i32_u (memory.size)) (i64.const 16)))
      (then (drop (memory.grow (i32.wrap_i64 (i64.shr_u (local.get $need) (i64.const 16)))))))
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

  (func (export "__guest_call") (param $op_len i32) (param $len i32) (result i32)
    (call $receive (local.get $op_len) (local.get $len))
    (if (call $is (local.get $op_len) (i32.const 16) (i32.const 4))
      (then (call $guest_response (i32.const 24) (i32.const 4)) (return (i32.const 1))))
    (if (call $is (local.get $op_len) (i32.const 32) (i32.const 4))
      (then (loop $forever (br $forever))))
    (if (call $is (local.get $op_len) (i32.const 40) (i32.const 8))
      (then (loop $forever (drop (call $host_response_len)) (br $forever))))
    (call $guest_error (i32.const 48) (i32.const 17))
    (i32.const 0))
)
