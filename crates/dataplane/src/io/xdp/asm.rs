//! A small eBPF assembler: the instructions the XDP program uses, encoded as the kernel reads
//! them (`struct bpf_insn`), with named labels for jumps so the program reads like assembly and
//! jump offsets are computed, never counted by hand.

/// One encoded instruction (`struct bpf_insn`: opcode, registers, offset, immediate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Insn {
    /// Opcode: class, size or operation, source.
    pub code: u8,
    /// Destination register in the low nibble, source register in the high one.
    pub regs: u8,
    /// Signed offset (memory access, jump distance).
    pub off: i16,
    /// Signed immediate.
    pub imm: i32,
}

/// A register: r0 (return value), r1–r5 (arguments, clobbered by calls), r6–r9 (kept across
/// calls), r10 (frame pointer, read-only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reg(pub u8);

/// The registers.
pub mod reg {
    use super::Reg;
    /// Return value.
    pub const R0: Reg = Reg(0);
    /// First argument (the context at entry).
    pub const R1: Reg = Reg(1);
    /// Second argument.
    pub const R2: Reg = Reg(2);
    /// Third argument.
    pub const R3: Reg = Reg(3);
    /// Fourth argument.
    pub const R4: Reg = Reg(4);
    /// Fifth argument.
    pub const R5: Reg = Reg(5);
    /// Callee-saved.
    pub const R6: Reg = Reg(6);
    /// Callee-saved.
    pub const R7: Reg = Reg(7);
    /// Callee-saved.
    pub const R8: Reg = Reg(8);
    /// Callee-saved.
    pub const R9: Reg = Reg(9);
    /// Frame pointer (the stack grows down from it).
    pub const R10: Reg = Reg(10);
}

/// Width of a memory access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// 1 byte.
    B,
    /// 2 bytes.
    H,
    /// 4 bytes.
    W,
    /// 8 bytes.
    Dw,
}

impl Size {
    fn bits(self) -> u8 {
        match self {
            Size::W => 0x00,
            Size::H => 0x08,
            Size::B => 0x10,
            Size::Dw => 0x18,
        }
    }
}

/// A conditional jump's comparison (unsigned where it matters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cond {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `>` unsigned
    Gt,
    /// `&` is non-zero
    Set,
}

impl Cond {
    fn bits(self) -> u8 {
        match self {
            Cond::Eq => 0x10,
            Cond::Gt => 0x20,
            Cond::Set => 0x40,
            Cond::Ne => 0x50,
        }
    }
}

const CLASS_LD: u8 = 0x00;
const CLASS_LDX: u8 = 0x01;
const CLASS_ST: u8 = 0x02;
const CLASS_STX: u8 = 0x03;
const CLASS_JMP: u8 = 0x05;
const CLASS_ALU64: u8 = 0x07;
const MODE_IMM: u8 = 0x00;
const MODE_MEM: u8 = 0x60;
const SRC_K: u8 = 0x00;
const SRC_X: u8 = 0x08;
const ALU_ADD: u8 = 0x00;
const ALU_MOV: u8 = 0xb0;
const JMP_JA: u8 = 0x00;
const JMP_CALL: u8 = 0x80;
const JMP_EXIT: u8 = 0x90;
/// `src_reg` of a 64-bit immediate load whose value is a map file descriptor.
const PSEUDO_MAP_FD: u8 = 1;

fn regs(dst: Reg, src: Reg) -> u8 {
    (src.0 << 4) | (dst.0 & 0x0f)
}

/// Why a program could not be assembled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AsmError {
    /// A jump names a label that was never placed.
    #[error("jump to undefined label {0:?}")]
    UndefinedLabel(&'static str),
    /// A label was placed twice.
    #[error("label {0:?} placed twice")]
    DuplicateLabel(&'static str),
    /// A jump too far for its 16-bit offset.
    #[error("jump to {0:?} is out of range")]
    OutOfRange(&'static str),
}

/// Builds a program: instructions appended in order, jumps resolved by [`Asm::finish`].
#[derive(Default)]
pub struct Asm {
    insns: Vec<Insn>,
    labels: Vec<(&'static str, usize)>,
    fixups: Vec<(usize, &'static str)>,
}

impl Asm {
    /// An empty program.
    pub fn new() -> Self {
        Self::default()
    }

    fn push(&mut self, code: u8, regs: u8, off: i16, imm: i32) -> &mut Self {
        self.insns.push(Insn {
            code,
            regs,
            off,
            imm,
        });
        self
    }

    /// Places `name` at the next instruction.
    pub fn label(&mut self, name: &'static str) -> &mut Self {
        self.labels.push((name, self.insns.len()));
        self
    }

    /// `dst = src`
    pub fn mov(&mut self, dst: Reg, src: Reg) -> &mut Self {
        self.push(CLASS_ALU64 | ALU_MOV | SRC_X, regs(dst, src), 0, 0)
    }

    /// `dst = imm`
    pub fn mov_imm(&mut self, dst: Reg, imm: i32) -> &mut Self {
        self.push(CLASS_ALU64 | ALU_MOV | SRC_K, regs(dst, Reg(0)), 0, imm)
    }

    /// `dst += src`
    pub fn add(&mut self, dst: Reg, src: Reg) -> &mut Self {
        self.push(CLASS_ALU64 | ALU_ADD | SRC_X, regs(dst, src), 0, 0)
    }

    /// `dst += imm`
    pub fn add_imm(&mut self, dst: Reg, imm: i32) -> &mut Self {
        self.push(CLASS_ALU64 | ALU_ADD | SRC_K, regs(dst, Reg(0)), 0, imm)
    }

    /// `dst = *(size *)(src + off)`
    pub fn load(&mut self, size: Size, dst: Reg, src: Reg, off: i16) -> &mut Self {
        self.push(CLASS_LDX | MODE_MEM | size.bits(), regs(dst, src), off, 0)
    }

    /// `*(size *)(dst + off) = src`
    pub fn store(&mut self, size: Size, dst: Reg, off: i16, src: Reg) -> &mut Self {
        self.push(CLASS_STX | MODE_MEM | size.bits(), regs(dst, src), off, 0)
    }

    /// `*(size *)(dst + off) = imm`
    pub fn store_imm(&mut self, size: Size, dst: Reg, off: i16, imm: i32) -> &mut Self {
        self.push(
            CLASS_ST | MODE_MEM | size.bits(),
            regs(dst, Reg(0)),
            off,
            imm,
        )
    }

    /// `dst = map` (a 64-bit immediate load the kernel turns into the map's address).
    pub fn load_map(&mut self, dst: Reg, map_fd: i32) -> &mut Self {
        self.push(
            CLASS_LD | MODE_IMM | Size::Dw.bits(),
            regs(dst, Reg(PSEUDO_MAP_FD)),
            0,
            map_fd,
        );
        self.push(0, 0, 0, 0)
    }

    /// `if dst <cond> imm goto target`
    pub fn jump_imm(&mut self, cond: Cond, dst: Reg, imm: i32, target: &'static str) -> &mut Self {
        self.fixups.push((self.insns.len(), target));
        self.push(CLASS_JMP | cond.bits() | SRC_K, regs(dst, Reg(0)), 0, imm)
    }

    /// `if dst <cond> src goto target`
    pub fn jump_reg(&mut self, cond: Cond, dst: Reg, src: Reg, target: &'static str) -> &mut Self {
        self.fixups.push((self.insns.len(), target));
        self.push(CLASS_JMP | cond.bits() | SRC_X, regs(dst, src), 0, 0)
    }

    /// `goto target`
    pub fn jump(&mut self, target: &'static str) -> &mut Self {
        self.fixups.push((self.insns.len(), target));
        self.push(CLASS_JMP | JMP_JA, 0, 0, 0)
    }

    /// Calls kernel helper `helper` (arguments in r1–r5, result in r0).
    pub fn call(&mut self, helper: i32) -> &mut Self {
        self.push(CLASS_JMP | JMP_CALL, 0, 0, helper)
    }

    /// Returns r0.
    pub fn exit(&mut self) -> &mut Self {
        self.push(CLASS_JMP | JMP_EXIT, 0, 0, 0)
    }

    /// Resolves the jumps and returns the instructions.
    pub fn finish(mut self) -> Result<Vec<Insn>, AsmError> {
        for (index, (name, _)) in self.labels.iter().enumerate() {
            if self.labels[..index].iter().any(|(other, _)| other == name) {
                return Err(AsmError::DuplicateLabel(name));
            }
        }
        for (at, target) in &self.fixups {
            let (_, to) = self
                .labels
                .iter()
                .find(|(name, _)| name == target)
                .ok_or(AsmError::UndefinedLabel(target))?;
            let distance = *to as i64 - (*at as i64 + 1);
            let off = i16::try_from(distance).map_err(|_| AsmError::OutOfRange(target))?;
            if let Some(insn) = self.insns.get_mut(*at) {
                insn.off = off;
            }
        }
        Ok(self.insns)
    }
}

#[cfg(test)]
mod tests {
    use super::reg::*;
    use super::*;

    #[test]
    fn encodes_as_the_kernel_reads_it() {
        let mut asm = Asm::new();
        asm.mov(R6, R1) // bf 16 00 00 00000000
            .load(Size::W, R2, R6, 4) // 61 62 04 00
            .store_imm(Size::W, R10, -4, 0) // 62 0a fc ff
            .load_map(R1, 7) // 18 11 00 00 07000000 + zero
            .label("out")
            .mov_imm(R0, 2) // b7 00 .. 02000000
            .exit(); // 95
        let insns = asm.finish().unwrap();
        let codes: Vec<(u8, u8, i16, i32)> = insns
            .iter()
            .map(|i| (i.code, i.regs, i.off, i.imm))
            .collect();
        assert_eq!(
            codes,
            vec![
                (0xbf, 0x16, 0, 0),
                (0x61, 0x62, 4, 0),
                (0x62, 0x0a, -4, 0),
                (0x18, 0x11, 0, 7),
                (0, 0, 0, 0),
                (0xb7, 0x00, 0, 2),
                (0x95, 0, 0, 0),
            ]
        );
    }

    #[test]
    fn jumps_are_relative_to_the_next_instruction() {
        let mut asm = Asm::new();
        asm.label("top")
            .jump_imm(Cond::Eq, R1, 0, "end") // 0 → 3: off 2
            .jump_reg(Cond::Gt, R2, R3, "top") // 1 → 0: off -2
            .jump("end") // 2 → 3: off 0
            .label("end")
            .exit();
        let insns = asm.finish().unwrap();
        assert_eq!(insns[0].off, 2);
        assert_eq!((insns[0].code, insns[0].regs), (0x15, 0x01));
        assert_eq!(insns[1].off, -2);
        assert_eq!((insns[1].code, insns[1].regs), (0x2d, 0x32));
        assert_eq!((insns[2].code, insns[2].off), (0x05, 0));
    }

    #[test]
    fn label_mistakes_are_errors() {
        let mut asm = Asm::new();
        asm.jump("nowhere");
        assert_eq!(asm.finish(), Err(AsmError::UndefinedLabel("nowhere")));
        let mut asm = Asm::new();
        asm.label("a").label("a");
        assert_eq!(asm.finish(), Err(AsmError::DuplicateLabel("a")));
    }
}
