use iproto::ServiceError;

// Every misuse below is reported in one compile run.
#[derive(ServiceError)]
#[iproto(tag = u8)]
enum KvError {
    NoCode,
    #[iproto(code = 0)]
    Zero,
    #[iproto(code = 0xffff_ff01)]
    Reserved,
    #[iproto(code = 2)]
    Two,
    #[iproto(code = 2, tag_value = 3)]
    AlsoTwo,
    #[iproto(code = 4)]
    Field(#[iproto(bre)] u32),
}

#[derive(ServiceError)]
struct NotAnEnum {
    code: u32,
}

#[derive(ServiceError)]
enum Borrowed<'a> {
    #[iproto(code = 1)]
    Message(&'a str),
}

fn main() {}
