// Every public header is compiled alone in its own translation unit beside
// this one (see tests/CMakeLists.txt); building the program is the test.
int main() { return 0; }
