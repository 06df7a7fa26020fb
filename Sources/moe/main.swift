// The `moe` executable: everything it does is in MoeCommandLine, which tests import.
import MoeCommandLine

Moe.main()
