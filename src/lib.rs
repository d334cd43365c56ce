//! udsim: an executable specification of Linux Unix-domain stream sockets, judged by the live kernel.
pub mod echo;
