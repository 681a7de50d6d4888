;; starts.wat: exports all three start functions a host may call after instantiation.
;;
;; `_start`, `wapc_init` and `start` each append one marker byte ("_", "w", "s") to a log in
;; this instance's memory. Every guest call answers with the log, so a host that runs each
;; exactly once per instance, in the recommended order (docs/wire.md §1.3), always answers "_ws",
;; however many calls the instance has served.
(module
  (import "wasmbus" "__guest_request"  (func $guest_request  (param i32 i32)))
  (import "wasmbus" "__guest_response" (func $guest_response (param i32 i32)))

  (memory (export "memory") 1)

  (global $log_len (mut i32) (i32.const 0))   ;; the log lives at address 16

  (func $mark (param $b i32)
    (if (i32.lt_u (global.get $log_len) (i32.const 64))
      (then
        (i32.store8 (i32.add (i32.const 16) (global.get $log_len)) (local.get $b))
        (global.set $log_len (i32.add (global.get $log_len) (i32.const 1))))))

  (func (export "_start")    (call $mark (i32.const 0x5f)))   ;; _
  (func (export "wapc_init") (call $mark (i32.const 0x77)))   ;; w
  (func (export "start")     (call $mark (i32.const 0x73)))   ;; s

  (func (export "__guest_call") (param $op_len i32) (param $len i32) (result i32)
    (local $need i64)
    (local.set $need (i64.add (i64.const 1024)
      (i64.add (i64.extend_i32_u (local.get $op_len)) (i64.extend_i32_u (local.get $len)))))
    (if (i64.gt_u (local.get $need) (i64.shl (i64.extend_i32_u (memory.size)) (i64.const 16)))
      (then (drop (memory.grow (i32.wrap_i64 (i64.shr_u (local.get $need) (i64.const 16)))))))
    (call $guest_request (i32.const 1024) (i32.add (i32.const 1024) (local.get $op_len)))
    (call $guest_response (i32.const 16) (global.get $log_len))
    (i32.const 1))
)
