"""Data preparation: sequences from the validated logs (`sequences`, with its Spark backend
`spark`), the tensors training reads (`tensors`) and the item texts' token states (`text`)."""
