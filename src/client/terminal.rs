//! The local terminal of `paddock exec -t`: raw mode while the remote
//! terminal runs, and its size.

use std::os::fd::{AsRawFd, BorrowedFd};

/// Puts the terminal in raw mode (keys go to the remote terminal as typed,
/// Ctrl-C included) and restores it when dropped.
pub struct RawMode {
    fd: i32,
    saved: libc::termios,
}

impl RawMode {
    /// Raw mode on `fd`, or `None` when it is not a terminal.
    pub fn enter(fd: BorrowedFd<'_>) -> Option<Self> {
        let fd = fd.as_raw_fd();
        // SAFETY: `termios` is plain data that tcgetattr fills; `fd` is open
        // for the duration (it is borrowed).
        unsafe {
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(fd, &mut saved) != 0 {
                return None;
            }
            let mut raw = saved;
            libc::cfmakeraw(&mut raw);
            if libc::tcsetattr(fd, libc::TCSANOW, &raw) != 0 {
                return None;
            }
            Some(Self { fd, saved })
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restores the attributes read in `enter` on the same fd.
        unsafe {
            libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved);
        }
    }
}

/// The terminal's size as (rows, columns), or `None` when `fd` is not a
/// terminal.
pub fn size(fd: BorrowedFd<'_>) -> Option<(u32, u32)> {
    // SAFETY: TIOCGWINSZ fills a `winsize`, plain data.
    unsafe {
        let mut size: libc::winsize = std::mem::zeroed();
        if libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut size) != 0 || size.ws_row == 0 {
            return None;
        }
        Some((u32::from(size.ws_row), u32::from(size.ws_col)))
    }
}
