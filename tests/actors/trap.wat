;; trap.wat: traps on purpose, to prove that a trap fails only its own call and that the
;; trapped instance is thrown away.
;;
;;   Ping           -> "pong", or "poisoned" if this instance has ever run Poison
;;   Trap           -> `unreachable`
;;   Poison         -> marks this instance as poisoned, then `unreachable`; if the runtime
;;                     wrongly reused the instance, a later Ping would answer "poisoned"
;;   DivZero        -> integer division by zero
;;   OutOfBounds    -> load from an address past the end of memory
;;   StackOverflow  -> unbounded recursion
;;   other          -> guest error "unknown operation"
(module
  (import "wasmbus" "__guest_request"  (func $guest_request  (param i32 i32)))
  (import "wasmbus" "__guest_response" (func $guest_response (param i32 i32)))
  (import "wasmbus" "__guest_error"    (func $guest_error    (param i32 i32)))

  (memory (export "memory") 1)

  (data (i32.const 16)  "Ping")               ;; 4
  (data (i32.const 24)  "pong")               ;; 4
  (data (i32.const 32)  "poisoned")           ;; 8
  (data (i32.const 48)  "Trap")               ;; 4
  (data (i32.const 56)  "Poison")             ;; 6
  (data (i32.const 64)  "DivZero")            ;; 7
  (data (i32.const 72)  "OutOfBounds")        ;; 11
  (data (i32.const 88)  "StackOverflow")      ;; 13
  (data (i32.const 104) "unknown operation")  ;; 17

  (global $poisoned (mut i32) (i32.const 0))
  (global $zero (mut i32) (i32.const 0))      ;; mutable, so the division is not folded away

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

  (func $recurse (param $n i32) (result i32)
    (i32.add (call $recurse (i32.add (local.get $n) (i32.const 1))) (i32.const 1)))

  (func (export "__guest_call") (param $op_len i32) (param $len i32) (result i32)
    (call $receive (local.get $op_len) (local.get $len))
    (if (call $is (local.get $op_len) (i32.const 16) (i32.const 4))
      (then
        (if (global.get $poisoned)
          (then (call $guest_response (i32.const 32) (i32.const 8)))
          (else (call $guest_response (i32.const 24) (i32.const 4))))
        (return (i32.const 1))))
    (if (call $is (local.get $op_len) (i32.const 48) (i32.const 4))
      (then (unreachable)))
    (if (call $is (local.get $op_len) (i32.const 56) (i32.const 6))
      (then (global.set $poisoned (i32.const 1)) (unreachable)))
    (if (call $is (local.get $op_len) (i32.const 64) (i32.const 7))
      (then (return (i32.div_u (i32.const 1) (global.get $zero)))))
    (if (call $is (local.get $op_len) (i32.const 72) (i32.const 11))
      (then (return (i32.load (i32.const 0xfffffff0)))))
    (if (call $is (local.get $op_len) (i32.const 88) (i32.const 13))
      (then (return (call $recurse (i32.const 0)))))
    (call $guest_error (i32.const 104) (i32.const 17))
    (i32.const 0))
)
