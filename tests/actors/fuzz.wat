;; fuzz.wat: interprets its payload as a little program of wasmbus import calls with arbitrary
;; arguments, for property tests ("whatever a guest does with the ABI, the host survives and
;; the call ends in a result or a GuestCallError").
;;
;; The request is read to address 1024 (operation) and 65536 (payload = program; at most
;; 60000 bytes). Memory is 2 pages (128 KiB), so pointers below 131072 are valid.
;; Program = instructions, each one byte (import number, taken modulo 10) followed by that
;; import's i32 arguments, 4 bytes little-endian each:
;;   0 __guest_request(op_ptr, payload_ptr)          5 __host_response(ptr)
;;   1 __guest_response(ptr, len)                    6 __host_error_len()
;;   2 __guest_error(ptr, len)                       7 __host_error(ptr)
;;   3 __host_call(bd, bd_len, ns, ns_len,           8 __console_log(ptr, len)
;;                 op, op_len, payload, payload_len) 9 return the argument from __guest_call
;;   4 __host_response_len()
;; Results of imports are dropped. Running off the end of the program returns 1; a
;; truncated last instruction is ignored.
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
  (import "wasmbus" "__console_log"       (func $console_log       (param i32 i32)))

  (memory (export "memory") 2)

  ;; number of i32 arguments of each instruction 0..9
  (data (i32.const 16) "\02\02\02\08\00\01\00\01\02\01")
  (data (i32.const 32) "fuzz: request too large")   ;; 23

  (func $arg (param $at i32) (param $k i32) (result i32)
    (i32.load (i32.add (local.get $at) (i32.shl (local.get $k) (i32.const 2)))))

  (func (export "__guest_call") (param $op_len i32) (param $len i32) (result i32)
    (local $pc i32) (local $end i32) (local $ins i32) (local $nargs i32) (local $a i32)
    (if (i32.or (i32.gt_u (local.get $op_len) (i32.const 60000))
                (i32.gt_u (local.get $len) (i32.const 60000)))
      (then (call $guest_error (i32.const 32) (i32.const 23)) (return (i32.const 0))))
    (call $guest_request (i32.const 1024) (i32.const 65536))
    (local.set $pc (i32.const 65536))
    (local.set $end (i32.add (i32.const 65536) (local.get $len)))
    (block $done
      (loop $step
        (br_if $done (i32.ge_u (local.get $pc) (local.get $end)))
        (local.set $ins (i32.rem_u (i32.load8_u (local.get $pc)) (i32.const 10)))
        (local.set $nargs (i32.load8_u offset=16 (local.get $ins)))
        (local.set $a (i32.add (local.get $pc) (i32.const 1)))
        (br_if $done (i32.gt_u (i32.shl (local.get $nargs) (i32.const 2))
                               (i32.sub (local.get $end) (local.get $a))))
        (local.set $pc (i32.add (local.get $a) (i32.shl (local.get $nargs) (i32.const 2))))
        (block $b9 (block $b8 (block $b7 (block $b6 (block $b5
        (block $b4 (block $b3 (block $b2 (block $b1 (block $b0
          (br_table $b0 $b1 $b2 $b3 $b4 $b5 $b6 $b7 $b8 $b9 (local.get $ins)))
          (call $guest_request (call $arg (local.get $a) (i32.const 0)) (call $arg (local.get $a) (i32.const 1)))
          (br $step))
          (call $guest_response (call $arg (local.get $a) (i32.const 0)) (call $arg (local.get $a) (i32.const 1)))
          (br $step))
          (call $guest_error (call $arg (local.get $a) (i32.const 0)) (call $arg (local.get $a) (i32.const 1)))
          (br $step))
          (drop (call $host_call
            (call $arg (local.get $a) (i32.const 0)) (call $arg (local.get $a) (i32.const 1))
            (call $arg (local.get $a) (i32.const 2)) (call $arg (local.get $a) (i32.const 3))
            (call $arg (local.get $a) (i32.const 4)) (call $arg (local.get $a) (i32.const 5))
            (call $arg (local.get $a) (i32.const 6)) (call $arg (local.get $a) (i32.const 7))))
          (br $step))
          (drop (call $host_response_len))
          (br $step))
          (call $host_response (call $arg (local.get $a) (i32.const 0)))
          (br $step))
          (drop (call $host_error_len))
          (br $step))
          (call $host_error (call $arg (local.get $a) (i32.const 0)))
          (br $step))
          (call $console_log (call $arg (local.get $a) (i32.const 0)) (call $arg (local.get $a) (i32.const 1)))
          (br $step))
        (return (call $arg (local.get $a) (i32.const 0)))))
    (i32.const 1))
)
